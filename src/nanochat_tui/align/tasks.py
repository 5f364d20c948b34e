"""Evaluation tasks: local JSONL files in nanochat's task formats and an embedded stdlib task.

Two kinds (the engine scores them in jax_engine/task_eval.py):

- **choice**: a prompt and several continuations; the model's pick is the continuation with the
  lowest mean negative log-likelihood per token (CORE's rule; for one-token letters it is the
  letter with the highest log-prob, as nanochat's categorical chat eval does).
- **generative**: a chat question; the model answers greedily (calculator calls run) and the
  number after ``#### `` in its reply must equal the reference's (GSM8K's rule).

JSONL line formats, recognised by their keys (one kind per file):

- CORE multiple choice: ``{"query" | "context", "choices": [...], "gold": i}`` scored as plain text
  ``query + continuation_delimiter + choice`` (delimiter ``" "`` unless the line sets one);
- ARC: ``{"question", "choices": {"text": [...], "label": [...]}, "answerKey"}`` and
- MMLU: ``{"question", "choices": [...], "answer": i}``, both asked in the chat format with
  nanochat's multiple-choice rendering (``- choice=A`` lines) and scored on the answer letter;
- GSM8K: ``{"question", "answer": "... #### 42"}``: generative.

The embedded task ``stdlib-modules`` ("Which module defines `dumps`?", 4 choices such as
"`json.dumps`") is derived from the Python that runs it. Its ``test`` split holds the names whose
question the embedded SFT set keeps out of training (align/embedded.py, ``held_out`` at
``SFT_VAL_FRACTION``, the val_fraction of the chat prefabs), so a fine-tuned model never saw them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanochat_tui.align.chat import iter_jsonl
from nanochat_tui.errors import UserError

GSM_RE = re.compile(r"#### (\-?[0-9\.\,]+)")
LETTERS = ("A", "B", "C", "D", "E", "F", "G", "H")
SFT_VAL_FRACTION = 0.05
EMBEDDED_TASKS = ("stdlib-modules",)


@dataclass(frozen=True)
class ChoiceItem:
    """``prompt`` is a list of chat messages (ends with a user turn) or a plain-text context."""

    prompt: list[dict[str, Any]] | str
    choices: tuple[str, ...]
    gold: int


@dataclass(frozen=True)
class GenerativeItem:
    messages: list[dict[str, Any]]
    answer: str  # the reference number, normalised (``extract_answer``)


@dataclass
class TaskSet:
    name: str  # file stem or embedded name: results go to RUN/evals/<name>/
    kind: str  # "choice" | "generative"
    items: list[ChoiceItem | GenerativeItem] = field(default_factory=list)
    source: str = ""


def extract_answer(text: str) -> str | None:
    """The number after ``#### `` (commas dropped), as GSM8K's grader reads it; None without one."""
    match = GSM_RE.search(text)
    return match.group(1).strip().replace(",", "") if match else None


def render_mc(question: str, letters: tuple[str, ...], choices: list[str]) -> str:
    """nanochat's multiple-choice prompt: the letter after each choice, no space before it."""
    lines = "".join(
        f"- {choice}={letter}\n" for letter, choice in zip(letters, choices, strict=True)
    )
    return (
        f"Multiple Choice question: {question}\n{lines}"
        "\nRespond only with the letter of the correct answer."
    )


# ---------------------------------------------------------------- JSONL formats


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def _core(row: dict[str, Any]) -> ChoiceItem:
    context = row.get("query", row.get("context"))
    choices, gold = row["choices"], row["gold"]
    if not isinstance(context, str) or not _strings(choices) or not _index(gold, choices):
        raise ValueError('CORE lines need "query" (text), "choices" (texts) and "gold" (an index)')
    delimiter = row.get("continuation_delimiter", " ")
    return ChoiceItem(context + str(delimiter), tuple(choices), gold)


def _arc(row: dict[str, Any]) -> ChoiceItem:
    choices = row["choices"]
    texts, labels = choices.get("text"), choices.get("label")
    if not _strings(texts) or not _strings(labels) or len(texts) != len(labels):
        raise ValueError('ARC "choices" needs "text" and "label" lists of the same length')
    if row["answerKey"] not in labels:
        raise ValueError(f"answerKey {row['answerKey']!r} is not one of the labels {labels}")
    prompt = render_mc(str(row["question"]), tuple(labels), texts)
    return ChoiceItem(_user(prompt), tuple(labels), labels.index(row["answerKey"]))


def _mmlu(row: dict[str, Any]) -> ChoiceItem:
    choices, answer = row["choices"], row["answer"]
    if not _strings(choices) or not 2 <= len(choices) <= len(LETTERS):
        raise ValueError(f'MMLU "choices" must be 2 to {len(LETTERS)} strings')
    if not _index(answer, choices):
        raise ValueError(
            f'"answer" must be the index of the right choice (0 to {len(choices) - 1})'
        )
    letters = LETTERS[: len(choices)]
    return ChoiceItem(_user(render_mc(str(row["question"]), letters, choices)), letters, answer)


def _gsm8k(row: dict[str, Any]) -> GenerativeItem:
    answer = extract_answer(str(row["answer"]))
    if answer is None:
        raise ValueError('the "answer" has no final "#### <number>" line')
    return GenerativeItem(_user(str(row["question"])), answer)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and len(value) >= 2 and all(isinstance(v, str) for v in value)


def _index(value: Any, choices: list) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(choices)


FORMATS: tuple[tuple[str, Callable[[dict], Any], tuple[str, ...]], ...] = (
    ("CORE", _core, ("choices", "gold")),
    ("ARC", _arc, ("question", "choices", "answerKey")),
    ("MMLU", _mmlu, ("question", "choices", "answer")),
    ("GSM8K", _gsm8k, ("question", "answer")),
)


def parse_row(row: Any) -> ChoiceItem | GenerativeItem:
    """One JSONL object in any of the formats (module docstring); ValueError says what is wrong."""
    if not isinstance(row, dict):
        raise ValueError("each line must be a JSON object")
    for name, parse, keys in FORMATS:
        if all(k in row for k in keys):
            if name == "GSM8K" and "choices" in row:
                continue
            try:
                return parse(row)
            except (KeyError, AttributeError, TypeError) as err:
                raise ValueError(f"a {name} line with a bad field ({err})") from None
    raise ValueError(
        "unknown format: expected CORE {query, choices, gold}, ARC {question, choices, "
        "answerKey}, MMLU {question, choices, answer} or GSM8K {question, answer}"
    )


def load_task_file(path: Path | str) -> TaskSet:
    """Read a task JSONL file; the first bad line is one UserError naming the file and line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"task file {path} does not exist", "pass a .jsonl file or a task name")
    task = TaskSet(path.stem, "", source=str(path))
    for n, row in iter_jsonl(path):
        try:
            item = parse_row(row)
        except ValueError as err:
            raise UserError(
                f"{path}, line {n}: {err}", "fix or remove that line (formats: docs/alignment.md)"
            ) from None
        kind = "choice" if isinstance(item, ChoiceItem) else "generative"
        if task.kind and kind != task.kind:
            raise UserError(
                f"{path}, line {n}: a {kind} item in a file of {task.kind} items",
                "keep one kind of task per file (multiple choice or #### answers)",
            )
        task.kind = kind
        task.items.append(item)
    if not task.items:
        raise UserError(f"{path} has no task items", "add JSONL lines (formats: docs/alignment.md)")
    return task


# ---------------------------------------------------------------- the embedded task


def _stable(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def stdlib_module_items(split: str = "test") -> list[ChoiceItem]:
    """ "Which module defines `NAME`?" for the stdlib names of the embedded chat set whose name
    only one of its modules defines; choices are ``module.NAME`` for the right module and three
    others (picked by a hash). ``split``: "test" (held out of SFT), "train" or "all"."""
    from nanochat_tui.align.embedded import MODULES, QUESTIONS, _members, _variant, held_out

    homes: dict[str, list[str]] = {}
    for module in MODULES:
        for qualified, _text in _members(module):
            homes.setdefault(qualified.rsplit(".", 1)[1], []).append(module)
    items = []
    for name, modules in sorted(homes.items()):
        if len(modules) != 1:
            continue  # defined in several modules: no single right answer
        module = modules[0]
        qualified = f"{module}.{name}"
        sft_question = QUESTIONS[_variant(qualified, len(QUESTIONS))].format(name=qualified)
        unseen = held_out(sft_question, SFT_VAL_FRACTION)
        if (split == "test" and not unseen) or (split == "train" and unseen):
            continue
        others = sorted((m for m in MODULES if m != module), key=lambda m: _stable(name + m))[:3]
        choices = sorted([module, *others], key=lambda m: _stable(m + name))
        items.append(
            ChoiceItem(
                _user(f"Which module defines `{name}`?"),
                tuple(f"`{m}.{name}`" for m in choices),
                choices.index(module),
            )
        )
    return items


def load_task(spec: str, split: str = "test") -> TaskSet:
    """An embedded task by name (``EMBEDDED_TASKS``) or a JSONL file path."""
    if spec == "stdlib-modules":
        if split not in ("test", "train", "all"):
            raise UserError(f"unknown split {split!r}", "use test, train or all")
        name = spec if split == "test" else f"{spec}-{split}"
        return TaskSet(name, "choice", list(stdlib_module_items(split)), "embedded")
    if spec.endswith(".jsonl") or Path(spec).expanduser().exists():
        return load_task_file(spec)
    raise UserError(
        f"unknown task {spec!r}",
        f"use one of {', '.join(EMBEDDED_TASKS)} or a path to a .jsonl file",
    )


# ---------------------------------------------------------------- saved results


def read_results(run_dir: Path) -> list[dict[str, Any]]:
    """Every saved result of a run (``RUN/evals/<task>/step_<N>.json``), by task then step;
    unreadable files are skipped (a result is rewritten whole, never half)."""
    import json

    out = []
    for path in sorted(Path(run_dir).glob("evals/*/step_*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or not isinstance(record.get("accuracy"), int | float):
            continue  # not a result (or a hand-edited one without a number to show)
        try:
            record["step"] = int(record.get("step", path.stem.removeprefix("step_")))
        except (TypeError, ValueError):
            continue
        record["path"] = str(path)
        out.append(record)
    return sorted(out, key=lambda r: (str(r.get("task")), r["step"]))
