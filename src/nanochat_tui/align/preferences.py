"""Preference pairs for DPO, ORPO and SimPO: the row format, its checks, rendering, the embedded set.

A row (one JSONL line) is ``{"id", "prompt" | "messages", "chosen", "rejected", ...}``:

- ``prompt``: the user's message (a string), or ``messages``: a conversation in the chat format
  (align/chat.py) that ends with a user message;
- ``chosen`` / ``rejected``: two assistant replies to it, each a string or a list of parts
  (``{"type": "text"|"python"|"python_output", "text": ...}``), the preferred one first;
- ``id``: a stable name (optional; defaults to the line number); other keys are kept for people
  and ignored here.

Each pair renders (align/chat.py) to ``prompt + chosen`` and ``prompt + rejected`` token ids with a
completion mask that is 1 exactly on the final reply's supervised tokens (its text, python calls,
``<|assistant_end|>``): the prompt, including any earlier assistant turns, carries no weight.

The embedded set is derived from the Python standard library, deterministically: the question
"What does `json.dumps` do?" with chosen = ``json.dumps``'s documented summary and rejected = the
summary of another function, under the same name. ``held_out`` splits it by a hash of the id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanochat_tui.align.chat import ChatTokenizer, ConversationError, iter_jsonl, normalize, render
from nanochat_tui.errors import UserError

FORMAT_HINT = (
    'each line: {"id": ..., "prompt": "...", "chosen": "...", "rejected": "..."} '
    "(or messages instead of prompt; docs/alignment.md)"
)


@dataclass(frozen=True)
class Pair:
    """One rendered preference pair: both sequences share the prompt's ids."""

    id: str
    prompt_len: int
    chosen_ids: list[int]
    chosen_mask: list[int]
    rejected_ids: list[int]
    rejected_mask: list[int]
    line: int  # 1-based line in its file (0 for built-in data)

    @property
    def length(self) -> int:
        """The longer of the two rendered sequences, in tokens."""
        return max(len(self.chosen_ids), len(self.rejected_ids))


def _prompt_messages(row: dict[str, Any]) -> list[dict[str, Any]]:
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise ConversationError("messages must be a non-empty list of chat messages")
        last = messages[-1]
        if not isinstance(last, dict) or last.get("role") != "user":
            raise ConversationError(
                "the messages must end with a user message (the replies come in chosen/rejected)"
            )
        return list(messages)
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConversationError('a preference row needs a "prompt" string or "messages"')
    return [{"role": "user", "content": prompt}]


def render_pair(tokenizer: ChatTokenizer, row: Any, line: int = 0) -> Pair:
    """Validate one preference row and render it (module docstring); ``ConversationError`` says
    what is wrong."""
    if not isinstance(row, dict):
        raise ConversationError(f"expected a JSON object, not {type(row).__name__}")
    missing = [k for k in ("chosen", "rejected") if row.get(k) in (None, "", [])]
    if missing:
        raise ConversationError(
            f"the row has no {' and no '.join(missing)} answer; a preference row needs both "
            "chosen and rejected"
        )
    if row["chosen"] == row["rejected"]:
        raise ConversationError("chosen and rejected are the same answer: nothing to prefer")
    messages = _prompt_messages(row)
    prompt_ids, _ = render(tokenizer, normalize({"messages": messages}))
    out = []
    for key in ("chosen", "rejected"):
        try:
            turns = normalize({"messages": [*messages, {"role": "assistant", "content": row[key]}]})
        except ConversationError as err:
            raise ConversationError(f"{key}: {err}") from None
        ids, mask = render(tokenizer, turns)
        start = len(prompt_ids)
        out.append((ids, [0] * start + mask[start:]))
    pid = row.get("id", f"line {line}")
    return Pair(str(pid), len(prompt_ids), *out[0], *out[1], line)


def load_pairs(path: Path | str, tokenizer: ChatTokenizer, max_tokens: int) -> list[Pair]:
    """Render every row of a preference JSONL file; the first bad line is a UserError naming the
    file, the line and the fix. ``max_tokens`` bounds each rendered sequence (over-long pairs are
    refused, never silently truncated)."""
    path = Path(path).expanduser()
    pairs: list[Pair] = []
    seen: dict[str, int] = {}
    for n, row in iter_jsonl(path):
        try:
            pair = render_pair(tokenizer, row, n)
        except ConversationError as err:
            raise UserError(
                f"{path}, line {n}: {err}", f"fix or remove that line; {FORMAT_HINT}"
            ) from None
        if pair.length > max_tokens:
            raise UserError(
                f"{path}, line {n}: the pair is {pair.length} tokens, over the limit of "
                f"{max_tokens} (model.sequence_len + 1)",
                "shorten the prompt or the answers, or raise model.sequence_len",
            )
        if pair.id in seen:
            raise UserError(
                f"{path}, line {n}: id {pair.id!r} is already used on line {seen[pair.id]}",
                "give every row its own id",
            )
        seen[pair.id] = n
        pairs.append(pair)
    if not pairs:
        raise UserError(f"{path} has no preference pairs", FORMAT_HINT)
    return pairs


def held_out(key: str, fraction: float) -> bool:
    """Deterministic membership of the held-out split of preference pairs, by a hash of ``key``."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"pref-val").digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


def _pick(key: str, n: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "little") % n


def embedded_preferences() -> list[dict[str, Any]]:
    """The embedded preference set (module docstring): one pair per documented stdlib member,
    asked as the embedded chat set asks it."""
    from nanochat_tui.align.embedded import stdlib_conversations

    items = []
    for conv in stdlib_conversations():
        question, answer = (m["content"] for m in conv["messages"])
        name, text = answer[1:].split("`: ", 1)
        items.append((question, name, text))
    rows = []
    for i, (question, name, text) in enumerate(items):
        j = _pick(f"rejected:{name}", len(items) - 1)
        j += j >= i  # any member but this one
        other = items[j][2]
        if other == text:
            continue  # two members share one docstring: no wrong answer to offer
        rows.append(
            {
                "id": f"stdlib:{name}",
                "prompt": question,
                "chosen": f"`{name}`: {text}",
                "rejected": f"`{name}`: {other}",
            }
        )
    return rows


def render_embedded(
    tokenizer: ChatTokenizer, max_tokens: int, rows: Iterable[dict[str, Any]] | None = None
) -> tuple[list[Pair], int]:
    """The embedded set rendered, and how many pairs were longer than ``max_tokens`` (skipped)."""
    pairs, skipped = [], 0
    for row in embedded_preferences() if rows is None else rows:
        pair = render_pair(tokenizer, row)
        if pair.length > max_tokens:
            skipped += 1
            continue
        pairs.append(pair)
    return pairs, skipped
