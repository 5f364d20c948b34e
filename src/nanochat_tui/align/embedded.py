"""The embedded default chat set: offline, deterministic conversations for SFT.

- stdlib questions: for public functions and classes of a fixed list of standard-library modules,
  "What does `json.dumps` do?" → the first sentence of its docstring (as this Python has it);
- identity conversations: who the assistant is and what it can and cannot do, derived from the
  project's SOUL (name, persona, principles) and agent interface (its tools);
- calculator conversations: arithmetic answered with a ``python`` tool call, its output (from
  align/calculator.py) and the answer, in nanochat's tool format.

The same Python gives the same set, in the same order. ``held_out`` splits it by a hash of each
question, so the validation conversations stay held out whatever else changes.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import random
import re
from typing import Any

from nanochat_tui.align.calculator import run_tool
from nanochat_tui.align.interface import PYTHON, Interface
from nanochat_tui.align.soul import STARTER_SOUL, Soul, parse_soul

MODULES = (
    "abc", "argparse", "base64", "bisect", "calendar", "collections", "colorsys", "copy", "csv",
    "datetime", "difflib", "fnmatch", "fractions", "functools", "glob", "gzip", "hashlib", "heapq",
    "html", "inspect", "io", "itertools", "json", "logging", "math", "operator", "os", "os.path",
    "pathlib", "pickle", "pprint", "random", "re", "secrets", "shlex", "shutil", "statistics",
    "string", "struct", "subprocess", "sys", "tempfile", "textwrap", "threading", "time",
    "unicodedata", "urllib.parse", "uuid", "zlib",
)  # fmt: skip

# Where os and os.path functions really live.
OS_HOMES = ("posix", "nt", "posixpath", "ntpath", "genericpath")

QUESTIONS = (
    "What does `{name}` do?",
    "What is `{name}` for?",
    "Explain `{name}` in one sentence.",
    "In Python, what does `{name}` do?",
)


def summary(obj: Any) -> str | None:
    """The first sentence of ``obj``'s own docstring (not inherited), or None without a usable one."""
    doc = obj.__doc__ if isinstance(getattr(obj, "__doc__", None), str) else None
    if not doc:
        return None
    doc = inspect.cleandoc(doc)
    paragraph = doc.strip().split("\n\n")[0]
    text = " ".join(line.strip() for line in paragraph.splitlines())
    match = re.match(r"(.+?\.)(\s|$)", text)
    sentence = match.group(1) if match else text
    if not 12 <= len(sentence) <= 200 or "(" in sentence.split(" ")[0]:
        return None  # empty, too long, or a call signature rather than a description
    return sentence


def _members(module_name: str) -> list[tuple[str, str]]:
    module = importlib.import_module(module_name)
    out, seen = [], set()
    for attr in sorted(vars(module)):
        obj = vars(module)[attr]
        if attr.startswith("_") or id(obj) in seen:
            continue  # private, or an alias of a member already asked about
        if not (inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.isclass(obj)):
            continue
        seen.add(id(obj))
        home = (getattr(obj, "__module__", None) or "").split(".")[0].lstrip("_")
        if home not in (module_name.split(".")[0], *OS_HOMES):
            continue  # imported from elsewhere (``inspect.OrderedDict``): ask its own module
        text = summary(obj)
        if text:
            out.append((f"{module_name}.{attr}", text))
    return out


def _variant(key: str, n: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "little") % n


def held_out(key: str, fraction: float) -> bool:
    """Deterministic membership of the held-out (validation) split, by a hash of ``key``."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"sft-val").digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


def stdlib_conversations() -> list[dict]:
    """One question per documented public function or class of ``MODULES``."""
    convs = []
    for module_name in MODULES:
        for name, text in _members(module_name):
            question = QUESTIONS[_variant(name, len(QUESTIONS))].format(name=name)
            answer = f"`{name}`: {text}"
            convs.append(
                {
                    "messages": [
                        {"role": "user", "content": question},
                        {"role": "assistant", "content": answer},
                    ]
                }
            )
    return convs


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _first_sentence(text: str) -> str:
    line = _one_line(text)
    match = re.match(r"(.+?[.!?])(\s|$)", line)
    return match.group(1) if match else line


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def identity_pairs(soul: Soul, interface: Interface) -> list[tuple[str, str]]:
    """(question, answer) pairs saying who the assistant is, derived from its SOUL (name, persona,
    principles) and its agent interface (the tools it can call); same input, same pairs."""
    name = soul.name
    tools = interface.all_tools()
    user_tools = [t for t in tools if t.name != PYTHON.name]
    tool_list = _join(
        ["a python calculator for arithmetic"]
        + [f"`{t.name}` ({_first_sentence(t.description).rstrip('.')})" for t in user_tools]
    )
    can = ["answer short questions about the Python standard library",
           "do arithmetic with my calculator tool"]  # fmt: skip
    can += [f"use my `{t.name}` tool: {_first_sentence(t.description)}" for t in user_tools]
    cannot = "I cannot browse the web, I know little beyond Python's standard library"
    if not user_tools:
        cannot += ", I have no tools besides my calculator"
    pairs = [
        ("Who are you?", f"I am {name}. {_first_sentence(soul.persona)}" if soul.persona
         else f"I am {name}, a small language model trained with nanochat-tui."),
        ("What is your name?", f"My name is {name}."),
        ("What can you do?", f"I can {_join(can)}."),
        ("What can't you do?", f"I am a very small model: {cannot}, and I often make mistakes."),
        ("Who made you?", "I was trained on this computer with nanochat-tui, from its own data."),
        ("Hello!", f"Hello! I am {name}. Ask me about the Python standard library."),
        ("Are you a human?", f"No, I am {name}, a language model."),
        ("Can you use tools?", f"Yes: {tool_list}."),
    ]  # fmt: skip
    if soul.persona:
        pairs.append(("Describe yourself.", _one_line(soul.persona)))
    if soul.principles:
        titles = _join([p.title for p in soul.principles])
        pairs.append(("What are your principles?", f"I follow {len(soul.principles)} "
                      f"principle{'s' if len(soul.principles) > 1 else ''}: {titles}."))  # fmt: skip
    for p in soul.principles:
        pairs.append((f'What does your principle "{p.title}" mean?', _one_line(p.text)))
    for t in user_tools:
        args = _join(sorted(t.parameters.get("properties", {})))
        takes = f" It takes {args}." if args else ""
        pairs.append((f"What does your `{t.name}` tool do?", f"{_one_line(t.description)}{takes}"))
    return pairs


def identity_conversations(
    soul: Soul | None = None, interface: Interface | None = None
) -> list[dict]:
    """The assistant's identity as single-turn conversations, from ``soul`` and ``interface``
    (the starter SOUL and no user tools when not given)."""
    soul = soul if soul is not None else parse_soul(STARTER_SOUL)
    interface = interface if interface is not None else Interface()
    return [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in identity_pairs(soul, interface)
    ]


def calculator_conversations(count: int = 120) -> list[dict]:
    """Arithmetic questions answered through the calculator tool (a seeded, fixed set)."""
    rng = random.Random(0)
    convs = []
    for _ in range(count):
        a, b = rng.randint(2, 999), rng.randint(2, 99)
        op = rng.choice(("+", "-", "*", "//", "%"))
        expression = f"{a} {op} {b}"
        output = run_tool(expression).output
        convs.append(
            {
                "messages": [
                    {"role": "user", "content": f"What is {expression}?"},
                    {"role": "assistant", "content": [{"type": "python", "text": expression}]},
                    {"role": "tool", "content": output},
                    {"role": "assistant", "content": f"{expression} = {output}."},
                ]
            }
        )
    return convs


def embedded_conversations(
    soul: Soul | None = None, interface: Interface | None = None
) -> list[dict]:
    """The whole embedded chat set: stdlib questions, identity (from ``soul`` and ``interface``,
    see ``identity_conversations``) and calculator use."""
    return (
        stdlib_conversations()
        + identity_conversations(soul, interface)
        + calculator_conversations()
    )
