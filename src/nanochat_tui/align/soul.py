"""SOUL.md: the model's constitution and identity (name, persona, principles).

The format (docs/alignment.md)::

    # <Name>
    ## Persona
    free text
    ## Principles
    ### <principle title>
    principle text (one or more lines)
    Critique: <critique request, optional>
    Revision: <revision request, optional>

Headings are matched case-insensitively; ``## Persona`` and ``## Principles`` may each appear once,
in any order, and both are optional. Inside a principle the text comes first; a ``Critique:`` or
``Revision:`` line starts that request, and plain lines after it continue it. Lines inside
fenced code blocks (```) are text, never headings. Anything else is an error naming the line and
what to do, so a typo never silently drops a principle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nanochat_tui.errors import UserError

SECTIONS = ("persona", "principles")
MAX_NAME = 80
_HEADING = re.compile(r"^(#{1,6})(\s+(.*?))?\s*#*\s*$")
_REQUEST = re.compile(r"^(critique|revision)\s*:\s*(.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class Principle:
    """One principle; ``critique``/``revision`` are the requests the synthetic-data step uses."""

    title: str
    text: str
    critique: str = ""
    revision: str = ""


@dataclass(frozen=True)
class Soul:
    name: str
    persona: str = ""
    principles: tuple[Principle, ...] = field(default_factory=tuple)


class _Draft:
    """A principle being read: its heading line and the lines of each field."""

    def __init__(self, title: str, line: int) -> None:
        self.title, self.line = title, line
        self.fields: dict[str, list[str]] = {"text": [], "critique": [], "revision": []}
        self.current = "text"

    def build(self, source: str) -> Principle:
        values = {k: "\n".join(v).strip() for k, v in self.fields.items()}
        if not values["text"]:
            raise UserError(
                f"{source}, line {self.line}: principle {self.title!r} has no text",
                "write one or more lines saying the principle under its ### heading",
            )
        if self.fields["critique"] and not values["critique"]:
            raise UserError(
                f"{source}, line {self.line}: principle {self.title!r} has an empty Critique:",
                "write the critique request after 'Critique:' or remove the line",
            )
        if self.fields["revision"] and not values["revision"]:
            raise UserError(
                f"{source}, line {self.line}: principle {self.title!r} has an empty Revision:",
                "write the revision request after 'Revision:' or remove the line",
            )
        return Principle(self.title, values["text"], values["critique"], values["revision"])


def parse_soul(text: str, source: str = "SOUL.md") -> Soul:
    """Parse and validate SOUL.md text; a problem is a ``UserError`` naming ``source``, the line
    and what to do."""
    name: str | None = None
    section: str | None = None
    seen: set[str] = set()
    persona: list[str] = []
    drafts: list[_Draft] = []
    fenced = False

    def fail(n: int, message: str, remediation: str) -> UserError:
        return UserError(f"{source}, line {n}: {message}", remediation)

    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
        heading = None if fenced or stripped.startswith("```") else _HEADING.match(stripped)
        if name is None:
            if not stripped:
                continue
            if heading is None or len(heading.group(1)) != 1:
                raise fail(n, "a SOUL starts with its name", "make the first line '# <Name>'")
            name = (heading.group(3) or "").strip()
            if not name:
                raise fail(n, "the SOUL has no name", "write the name after '# ', e.g. '# Ada'")
            if len(name) > MAX_NAME:
                raise fail(n, f"the name is over {MAX_NAME} characters", "use a shorter name")
            continue
        level = len(heading.group(1)) if heading else 0
        title = (heading.group(3) or "").strip() if heading else ""
        if level == 1:
            raise fail(n, "a second '# ' heading", "a SOUL has one '# <Name>'; use '## ' sections")
        if level == 2:
            key = title.lower()
            if key not in SECTIONS:
                raise fail(
                    n,
                    f"unknown section {title!r}",
                    "use '## Persona' or '## Principles' (or make it a '### ' principle)",
                )
            if key in seen:
                raise fail(n, f"a second '## {title}' section", "merge the two into one")
            seen.add(key)
            section = key
            continue
        if section == "persona":
            persona.append(line)  # sub-headings are part of the persona's free text
            continue
        if section == "principles":
            if level == 3:
                if not title:
                    raise fail(n, "a principle without a title", "write a title after '### '")
                if any(d.title.lower() == title.lower() for d in drafts):
                    raise fail(n, f"a second principle titled {title!r}", "give it another title")
                drafts.append(_Draft(title, n))
                continue
            if not drafts:
                if stripped:
                    raise fail(
                        n,
                        "text under '## Principles' before the first principle",
                        "start each principle with a '### <title>' heading",
                    )
                continue
            draft = drafts[-1]
            request = None if fenced else _REQUEST.match(stripped)
            if request:
                kind = request.group(1).lower()
                if draft.fields[kind]:
                    raise fail(
                        n,
                        f"principle {draft.title!r} has a second {kind.title()}:",
                        "keep one request per principle",
                    )
                draft.current = kind
                draft.fields[kind].append(request.group(2))
            else:
                draft.fields[draft.current].append(line.rstrip())
            continue
        if stripped:
            raise fail(
                n,
                "text outside a section",
                "put it under '## Persona' (or a principle under '## Principles')",
            )
    if name is None:
        raise UserError(f"{source}: the SOUL is empty", "start it with '# <Name>'")
    principles = tuple(d.build(source) for d in drafts)
    return Soul(name, "\n".join(persona).strip(), principles)


def render_soul(soul: Soul) -> str:
    """SOUL.md text for ``soul`` (``parse_soul(render_soul(s)) == s``)."""
    out = [f"# {soul.name}", "", "## Persona", soul.persona, "", "## Principles"]
    for p in soul.principles:
        out += ["", f"### {p.title}", p.text]
        if p.critique:
            out.append(f"Critique: {p.critique}")
        if p.revision:
            out.append(f"Revision: {p.revision}")
    return "\n".join(out).rstrip() + "\n"


STARTER_SOUL = """\
# nanochat

## Persona
A small, friendly assistant trained on this computer with nanochat-tui. It answers briefly,
knows the Python standard library a little, and uses its python calculator for arithmetic.

## Principles

### Be honest
Say what you know and admit what you do not; never invent facts, functions or results.
Critique: Identify any claim in the response that may be made up or stated with more certainty than it deserves.
Revision: Rewrite the response so it only states what is known and says plainly when it is unsure.

### Be helpful and brief
Answer the question that was asked, directly and in a few sentences.
Critique: Point out where the response wanders, pads or fails to answer the question.
Revision: Rewrite the response to answer the question directly and briefly.

### Use the calculator for arithmetic
Do arithmetic with the python tool instead of guessing the result.
Critique: Identify any arithmetic done without the calculator, and any wrong result.
Revision: Rewrite the response so the arithmetic goes through the python calculator.

### Be harmless
Refuse requests that could hurt people, and say why in one sentence.
Critique: Identify anything harmful, dangerous or unkind in the response.
Revision: Rewrite the response to remove harmful content while staying polite and helpful.
"""
