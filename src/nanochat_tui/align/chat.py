"""nanochat's chat format: conversations → token ids and a loss mask.

A conversation is ``{"messages": [{"role": ..., "content": ...}, ...]}`` (or ``{"prompt",
"completion"}``, read as one user and one assistant turn). Roles: ``system`` (only first; merged
into the first user turn with a blank line, as nanochat does), ``user``, ``assistant`` and ``tool``.
Assistant content is a string or a list of parts ``{"type": "text"|"python"|"python_output",
"text": ...}`` (nanochat's own form); a ``tool`` message is the output of the assistant's preceding
python call and joins that assistant turn as a ``python_output`` part, and an assistant message
right after it continues the same turn.

Rendering: ``<|bos|>``, then ``<|user_start|>…<|user_end|>`` and
``<|assistant_start|>…<|assistant_end|>`` turns, python calls inside
``<|python_start|>…<|python_end|>`` and their outputs inside ``<|output_start|>…<|output_end|>``.
The mask is 1 exactly on the tokens the assistant produces: its text, its python calls with their
delimiters, and ``<|assistant_end|>``; never on ``<|bos|>``, user turns, ``<|assistant_start|>`` or
tool outputs (those come from Python at inference time).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nanochat_tui.errors import UserError

ROLES = ("system", "user", "assistant", "tool")
PART_TYPES = ("text", "python", "python_output")


class ChatTokenizer(Protocol):
    bos_id: int

    def encode(self, text: str) -> list[int]: ...

    def special(self, name: str) -> int: ...


class ConversationError(ValueError):
    """A conversation that breaks the format; ``str()`` says what is wrong and what to do."""


@dataclass(frozen=True)
class Turn:
    """A normalised turn: a user string, or an assistant list of ``(part_type, text)``."""

    role: str  # "user" | "assistant"
    parts: tuple[tuple[str, str], ...]


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConversationError(f"{where}: content must be a string, not {type(value).__name__}")
    return value


def _assistant_parts(content: Any, where: str) -> list[tuple[str, str]]:
    if isinstance(content, str):
        return [("text", content)]
    if not isinstance(content, list):
        raise ConversationError(
            f"{where}: assistant content must be a string or a list of parts "
            f'{{"type": "text"|"python"|"python_output", "text": ...}}'
        )
    parts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in PART_TYPES:
            got = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise ConversationError(
                f"{where}, part {j}: unknown part {got!r}; use type text, python or python_output"
            )
        parts.append((part["type"], _text(part.get("text"), f"{where}, part {j}")))
    return parts


def normalize(conversation: Any) -> list[Turn]:
    """Validate a conversation and bring it to alternating user/assistant turns (user first).

    Raises ``ConversationError`` naming the offending message and the fix."""
    if (
        isinstance(conversation, dict)
        and "messages" not in conversation
        and {"prompt", "completion"} <= conversation.keys()
    ):
        conversation = {
            "messages": [
                {"role": "user", "content": conversation["prompt"]},
                {"role": "assistant", "content": conversation["completion"]},
            ]
        }
    if not isinstance(conversation, dict) or not isinstance(conversation.get("messages"), list):
        raise ConversationError(
            'expected an object {"messages": [...]} or {"prompt": ..., "completion": ...}'
        )
    messages = conversation["messages"]
    if not messages:
        raise ConversationError("the conversation has no messages")
    turns: list[Turn] = []
    system: str | None = None
    for i, msg in enumerate(messages):
        where = f"message {i}"
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in ROLES:
            raise ConversationError(
                f"{where}: unknown role {role!r}; use one of {', '.join(ROLES)}"
            )
        content = msg.get("content")
        if role == "system":
            if i != 0:
                raise ConversationError(f"{where}: a system message may only come first")
            system = _text(content, where)
            continue
        if role == "user":
            text = _text(content, where)
            if system is not None:
                text, system = f"{system}\n\n{text}", None
            if turns and turns[-1].role == "user":
                raise ConversationError(
                    f"{where}: two user messages in a row; turns must alternate user/assistant"
                )
            turns.append(Turn("user", (("text", text),)))
            continue
        if system is not None or not turns:
            raise ConversationError(
                f"{where}: the conversation must start with a user message (after any system)"
            )
        if role == "tool":
            if turns[-1].role != "assistant" or turns[-1].parts[-1][0] != "python":
                raise ConversationError(
                    f"{where}: a tool message must follow an assistant python call "
                    '(a part {"type": "python", "text": ...})'
                )
            output = ("python_output", _text(content, where))
            turns[-1] = Turn("assistant", (*turns[-1].parts, output))
            continue
        parts = tuple(_assistant_parts(content, where))
        if turns[-1].role == "assistant":
            if turns[-1].parts[-1][0] != "python_output":
                raise ConversationError(
                    f"{where}: two assistant messages in a row; turns must alternate user/assistant"
                )
            turns[-1] = Turn("assistant", (*turns[-1].parts, *parts))
        else:
            turns.append(Turn("assistant", parts))
    if system is not None:
        raise ConversationError("a system message must be followed by a user message")
    return turns


def render(tokenizer: ChatTokenizer, turns: list[Turn]) -> tuple[list[int], list[int]]:
    """``(ids, mask)`` in nanochat's chat format (module docstring); mask 1 = supervised."""
    sp = tokenizer.special
    ids: list[int] = [tokenizer.bos_id]
    mask: list[int] = [0]

    def add(tokens: list[int], supervised: int) -> None:
        ids.extend(tokens)
        mask.extend([supervised] * len(tokens))

    for turn in turns:
        if turn.role == "user":
            add([sp("<|user_start|>"), *tokenizer.encode(turn.parts[0][1]), sp("<|user_end|>")], 0)
            continue
        add([sp("<|assistant_start|>")], 0)
        for kind, text in turn.parts:
            body = tokenizer.encode(text)
            if kind == "text":
                add(body, 1)
            elif kind == "python":
                add([sp("<|python_start|>"), *body, sp("<|python_end|>")], 1)
            else:
                add([sp("<|output_start|>"), *body, sp("<|output_end|>")], 0)
        add([sp("<|assistant_end|>")], 1)
    return ids, mask


def render_conversation(tokenizer: ChatTokenizer, conversation: Any) -> tuple[list[int], list[int]]:
    """Validate, normalise and render one conversation (see ``normalize`` and ``render``)."""
    return render(tokenizer, normalize(conversation))


def render_for_completion(tokenizer: ChatTokenizer, conversation: Any) -> list[int]:
    """The prompt ids for sampling the next assistant turn: the conversation up to its last user
    turn (a trailing assistant turn is dropped), then ``<|assistant_start|>``."""
    turns = normalize(conversation)
    if turns[-1].role == "assistant":
        turns = turns[:-1]
    ids, _ = render(tokenizer, turns)
    return [*ids, tokenizer.special("<|assistant_start|>")]


@dataclass
class Rendered:
    """One rendered conversation of a dataset, with where it came from."""

    ids: list[int]
    mask: list[int]
    line: int  # 1-based line in its file (0 for built-in data)


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed object)`` for each non-blank line; malformed JSON is a UserError
    naming the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}", "check the path") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text", "save it as UTF-8 JSONL") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(
                f"{path}, line {n}: malformed JSON ({err.msg} at column {err.colno})",
                "fix that line: each line must be one JSON object",
            ) from None


def load_conversations(
    path: Path | str, tokenizer: ChatTokenizer, max_tokens: int
) -> list[Rendered]:
    """Render every conversation of a JSONL file; the first bad line is a UserError naming the
    file, the line and the fix. ``max_tokens`` bounds a rendered conversation (over-long ones are
    refused rather than silently truncated)."""
    path = Path(path).expanduser()
    out: list[Rendered] = []
    for n, obj in iter_jsonl(path):
        try:
            ids, mask = render_conversation(tokenizer, obj)
        except ConversationError as err:
            raise UserError(
                f"{path}, line {n}: {err}",
                "fix or remove that line (format: docs/alignment.md)",
            ) from None
        if len(ids) > max_tokens:
            raise UserError(
                f"{path}, line {n}: the conversation is {len(ids)} tokens, over the limit of "
                f"{max_tokens} (model.sequence_len + 1)",
                "shorten or split it, or raise model.sequence_len",
            )
        if not any(mask):
            raise UserError(
                f"{path}, line {n}: the conversation has no assistant tokens to learn from",
                "add an assistant reply or remove that line",
            )
        out.append(Rendered(ids, mask, n))
    if not out:
        raise UserError(f"{path} has no conversations", 'add JSONL lines {"messages": [...]}')
    return out
