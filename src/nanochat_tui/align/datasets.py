"""Checking a chat or preference JSONL dataset line by line, for the Datasets view and the CLI.

Unlike ``chat.load_conversations`` (which stops a run at the first bad line), this reads the whole
file and reports every problem by line: malformed JSON, unknown roles, turns that do not
alternate, rows without assistant tokens, over-long rows. Lengths are counted in the run
tokenizer's tokens when one is given, else in characters of the rendered chat format (special
tokens count as one character each) — ``DatasetReport.unit`` says which.

Row kinds: chat rows (``{"messages": [...]}`` or ``{"prompt", "completion"}``) and preference
rows (``{"prompt"|"messages", "chosen", "rejected"}``), each side checked as a conversation.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from nanochat_tui.align.chat import ChatTokenizer, ConversationError, Turn, normalize, render
from nanochat_tui.errors import UserError

MAX_ISSUES = 500  # issues kept per file (all are counted)


class DecodingTokenizer(ChatTokenizer, Protocol):
    def decode(self, ids: list[int]) -> str: ...


@dataclass(frozen=True)
class LineIssue:
    line: int
    message: str


@dataclass(frozen=True)
class LengthStats:
    min: int
    mean: float
    median: float
    p95: int
    max: int


@dataclass
class DatasetReport:
    """What ``check_dataset`` found in one file."""

    path: Path
    unit: str  # "tokens" or "chars"
    lines: int = 0  # non-blank lines
    chat_rows: int = 0  # valid chat rows
    preference_rows: int = 0  # valid preference rows
    lengths: list[int] = field(default_factory=list)  # per valid row (longer side for preference)
    supervised: list[int] = field(default_factory=list)  # supervised tokens/chars per valid row
    issues: list[LineIssue] = field(default_factory=list)
    issue_count: int = 0
    first_valid_line: int | None = None

    @property
    def rows(self) -> int:
        return self.chat_rows + self.preference_rows

    def stats(self) -> LengthStats | None:
        if not self.lengths:
            return None
        ordered = sorted(self.lengths)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return LengthStats(
            ordered[0], statistics.fmean(ordered), statistics.median(ordered), p95, ordered[-1]
        )


def row_kind(obj: Any) -> str:
    """``"preference"`` for rows with ``chosen`` and ``rejected``, else ``"chat"``."""
    return (
        "preference" if isinstance(obj, dict) and {"chosen", "rejected"} <= obj.keys() else "chat"
    )


def _side(obj: dict, key: str) -> dict:
    """One side of a preference row as a chat conversation: the prompt, then ``obj[key]``."""
    if isinstance(obj.get("messages"), list):
        messages = list(obj["messages"])
    elif isinstance(obj.get("prompt"), str):
        messages = [{"role": "user", "content": obj["prompt"]}]
    else:
        raise ConversationError('a preference row needs "prompt" (a string) or "messages" (a list)')
    answer = obj[key]
    if isinstance(answer, str):
        messages.append({"role": "assistant", "content": answer})
    elif isinstance(answer, list):
        messages.extend(answer)
    else:
        raise ConversationError(f'"{key}" must be a string or a list of messages')
    return {"messages": messages}


def conversations_of(obj: Any) -> list[list[Turn]]:
    """The normalised conversations of one row (two for a preference row); raises
    ``ConversationError`` saying what is wrong."""
    if row_kind(obj) == "preference":
        out = []
        for key in ("chosen", "rejected"):
            try:
                out.append(normalize(_side(obj, key)))
            except ConversationError as err:
                raise ConversationError(f"{key}: {err}") from None
        return out
    return [normalize(obj)]


SPECIAL_NAMES = (
    "<|bos|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>", "<|assistant_end|>",
    "<|python_start|>", "<|python_end|>", "<|output_start|>", "<|output_end|>",
)  # fmt: skip


class Segment(NamedTuple):
    """A run of a rendered conversation: its text, whether it is supervised (mask 1), and
    whether it is one special token."""

    text: str
    supervised: bool
    special: bool = False


def text_segments(turns: list[Turn]) -> list[Segment]:
    """The rendered conversation as segments, special tokens written out: the same layout and
    mask as ``chat.render``, without a tokenizer."""
    out = [Segment("<|bos|>", False, True)]
    for turn in turns:
        if turn.role == "user":
            out += [
                Segment("<|user_start|>", False, True),
                Segment(turn.parts[0][1], False),
                Segment("<|user_end|>", False, True),
            ]
            continue
        out.append(Segment("<|assistant_start|>", False, True))
        for kind, text in turn.parts:
            if kind == "text":
                out.append(Segment(text, True))
                continue
            sup = kind == "python"
            name = "python" if sup else "output"
            out += [
                Segment(f"<|{name}_start|>", sup, True),
                Segment(text, sup),
                Segment(f"<|{name}_end|>", sup, True),
            ]
        out.append(Segment("<|assistant_end|>", True, True))
    return [s for s in out if s.text]


def measure(turns: list[Turn], tokenizer: ChatTokenizer | None) -> tuple[int, int]:
    """(length, supervised length) of one conversation: tokens with a tokenizer, else characters
    of the rendered text with each special token counted as one."""
    if tokenizer is None:
        sizes = [(1 if s.special else len(s.text), s.supervised) for s in text_segments(turns)]
        return sum(n for n, _ in sizes), sum(n for n, sup in sizes if sup)
    ids, mask = render(tokenizer, turns)
    return len(ids), sum(mask)


def preview(turns: list[Turn], tokenizer: DecodingTokenizer | None = None) -> list[Segment]:
    """Segments for showing a conversation with its supervised part marked. With a tokenizer
    they are decoded from the real ids and mask (exactly what training sees)."""
    if tokenizer is None:
        return text_segments(turns)
    ids, mask = render(tokenizer, turns)
    special = {tokenizer.special(name) for name in SPECIAL_NAMES}
    out: list[Segment] = []
    start = 0
    for i in range(1, len(ids) + 1):
        boundary = i == len(ids) or ids[i] in special or ids[i - 1] in special
        if boundary or mask[i] != mask[start]:
            out.append(
                Segment(tokenizer.decode(ids[start:i]), bool(mask[start]), ids[start] in special)
            )
            start = i
    return out


def check_row(
    obj: Any, tokenizer: ChatTokenizer | None = None, max_len: int | None = None
) -> tuple[str, int, int]:
    """``(kind, length, supervised)`` of one parsed row; ``ConversationError`` says why a row is
    unusable (bad format, no assistant tokens, longer than ``max_len``)."""
    kind = row_kind(obj)
    measured = [measure(turns, tokenizer) for turns in conversations_of(obj)]
    length = max(n for n, _ in measured)
    supervised = min(s for _, s in measured)
    if supervised == 0:
        raise ConversationError("no assistant tokens to learn from; add an assistant reply")
    if max_len is not None and length > max_len:
        unit = "tokens" if tokenizer is not None else "characters"
        raise ConversationError(
            f"over-long: {length} {unit}, over the limit of {max_len}; shorten or split it"
        )
    return kind, length, supervised


def check_dataset(
    path: Path | str, tokenizer: ChatTokenizer | None = None, max_len: int | None = None
) -> DatasetReport:
    """Check every line of a JSONL file (see the module docstring); only an unreadable file is a
    ``UserError``."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}", "check the path") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text", "save it as UTF-8 JSONL") from None
    report = DatasetReport(path, "tokens" if tokenizer is not None else "chars")

    def issue(n: int, message: str) -> None:
        report.issue_count += 1
        if len(report.issues) < MAX_ISSUES:
            report.issues.append(LineIssue(n, message))

    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        report.lines += 1
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            issue(n, f"malformed JSON ({err.msg} at column {err.colno})")
            continue
        try:
            kind, length, supervised = check_row(obj, tokenizer, max_len)
        except ConversationError as err:
            issue(n, str(err))
            continue
        if kind == "preference":
            report.preference_rows += 1
        else:
            report.chat_rows += 1
        report.lengths.append(length)
        report.supervised.append(supervised)
        if report.first_valid_line is None:
            report.first_valid_line = n
    return report


def read_row(path: Path | str, line: int) -> Any:
    """The parsed object on 1-based ``line`` of a JSONL file (a UserError when it is not one)."""
    path = Path(path).expanduser()
    try:
        with path.open(encoding="utf-8") as fh:
            for n, text in enumerate(fh, start=1):
                if n == line:
                    return json.loads(text)
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}", "check the file") from None
    except json.JSONDecodeError as err:
        raise UserError(
            f"{path}, line {line}: malformed JSON ({err.msg})", "fix that line"
        ) from None
    raise UserError(f"{path} has no line {line}", "pick a line of the file")


def run_max_len(run_dir: Path | str) -> int | None:
    """The longest conversation a run trains on (``model.sequence_len + 1``, as the SFT task
    refuses longer ones), from a run directory's ``config.yaml``; None when it has none."""
    import yaml

    path = Path(run_dir).expanduser() / "config.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return int(data["model"]["sequence_len"]) + 1
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None
