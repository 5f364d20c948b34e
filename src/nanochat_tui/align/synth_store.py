"""Where synthetic data lives, and how it is written so that nothing is lost or duplicated.

Under ``projects/<project>/``:

- ``synth/<set>/trace.jsonl``: one record per generated row with every turn (prompt, answer,
  critique request, critique, revision request, revision), its principle, settings, usage and
  ``status`` (``ok`` or ``skipped`` with a ``reason``). Append-only: each record is one
  ``write`` of a whole line followed by ``fsync``; a torn last line (power loss) is cut off when
  the file is next opened. The latest record of an id wins.
- ``synth/<set>/review.jsonl``: review decisions, append-only the same way:
  ``{"id", "review": "accepted"|"rejected"|"edited", "chosen"?: edited text, "at"}``. A row
  without a decision is ``pending``; the latest decision of an id wins.
- ``datasets/<set>-sft.jsonl`` (``{"messages": [user, assistant]}``) and
  ``datasets/<set>-pref.jsonl`` (``{"prompt", "chosen", "rejected"}``): what training reads,
  rewritten atomically (temp file + rename) from the two logs, holding **only accepted or edited
  rows**, each with its ``id``, ``review`` status, ``principle`` and ``source``.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nanochat_tui import projects
from nanochat_tui.errors import UserError

REVIEW_STATUSES = ("pending", "accepted", "rejected", "edited")
TRAINABLE = ("accepted", "edited")


@dataclass(frozen=True)
class SetPaths:
    """The files of one synthetic set ``name`` of ``project``."""

    project: str
    name: str

    @property
    def project_dir(self) -> Path:
        return projects.projects_dir() / self.project

    @property
    def dir(self) -> Path:
        return self.project_dir / "synth" / self.name

    @property
    def trace(self) -> Path:
        return self.dir / "trace.jsonl"

    @property
    def review(self) -> Path:
        return self.dir / "review.jsonl"

    @property
    def sft(self) -> Path:
        return self.project_dir / "datasets" / f"{self.name}-sft.jsonl"

    @property
    def pref(self) -> Path:
        return self.project_dir / "datasets" / f"{self.name}-pref.jsonl"


def list_sets() -> list[SetPaths]:
    """Every synthetic set of every project that has a trace, sorted."""
    found = sorted(projects.projects_dir().glob("*/synth/*/trace.jsonl"))
    return [SetPaths(p.parent.parent.parent.name, p.parent.name) for p in found]


class AppendLog:
    """An append-only JSONL file: whole lines, flushed and fsynced one by one."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self._cut_torn_tail()

    def _cut_torn_tail(self) -> None:
        """Drop a last line without its newline: it was never fully written."""
        size = os.fstat(self.fd).st_size
        if size == 0 or os.pread(self.fd, 1, size - 1) == b"\n":
            return
        start = max(0, size - (1 << 20))
        tail = os.pread(self.fd, size - start, start)
        keep = start + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
        os.ftruncate(self.fd, keep)
        os.fsync(self.fd)

    def append(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        os.write(self.fd, line)
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> AppendLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_log(path: Path) -> list[dict]:
    """The records of an append-only log (none if it does not exist); a torn last line is
    ignored, a damaged line elsewhere is a UserError naming it."""
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] != b"":
        lines = lines[:-1]  # torn tail, cut on the next append
    out = []
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError as err:
            raise UserError(
                f"{path}, line {n}: not valid JSON ({err.msg})",
                "this file is written by nanochat-tui only; remove or repair that line",
            ) from None
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise UserError(
                f"{path}, line {n}: a record without an 'id'", "remove or repair that line"
            )
        out.append(record)
    return out


def latest(records: list[dict]) -> dict[str, dict]:
    """id → the last record of that id, in first-seen order."""
    out: dict[str, dict] = {}
    for record in records:
        out.pop(record["id"], None)
        out[record["id"]] = record
    return out


@contextmanager
def writer_lock(paths_: SetPaths) -> Iterator[None]:
    """Hold the set's lock while generating; a second writer is refused with a message."""
    paths_.dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths_.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"another generation is writing {paths_.project}/{paths_.name}",
                "wait for it to finish or stop it, or write to another set (--set-name)",
            ) from None
        yield
    finally:
        os.close(fd)


# ---------------------------------------------------------------- review


@dataclass(frozen=True)
class ReviewRow:
    """A generated row as the review screen and the export see it."""

    id: str
    prompt: str
    answer: str
    critique: str
    revision: str
    principle: str
    review: str  # one of REVIEW_STATUSES
    edited: str | None = None  # the edited chosen text, for ``edited``

    @property
    def chosen(self) -> str:
        return self.edited if self.edited is not None else self.revision


def review_rows(paths_: SetPaths) -> list[ReviewRow]:
    """The set's ok rows with their latest review decision (``pending`` without one)."""
    decisions = latest(read_log(paths_.review))
    rows = []
    for record in latest(read_log(paths_.trace)).values():
        if record.get("status") != "ok":
            continue
        decision = decisions.get(record["id"], {})
        status = decision.get("review", "pending")
        rows.append(
            ReviewRow(
                id=record["id"],
                prompt=record["prompt"],
                answer=record["answer"],
                critique=record["critique"],
                revision=record["revision"],
                principle=record.get("principle", {}).get("title", ""),
                review=status if status in REVIEW_STATUSES else "pending",
                edited=decision.get("chosen") if status == "edited" else None,
            )
        )
    return rows


def decide(paths_: SetPaths, ids: list[str], status: str, chosen: str | None = None) -> None:
    """Record a review decision for ``ids`` (``edited`` needs ``chosen``), then re-export."""
    if status not in REVIEW_STATUSES:
        raise ValueError(f"unknown review status {status!r}")
    if status == "edited" and not (chosen or "").strip():
        raise UserError("an edited revision cannot be empty", "write the answer, or reject the row")
    with AppendLog(paths_.review) as log:
        for row_id in ids:
            record = {"id": row_id, "review": status, "at": time.time()}
            if status == "edited":
                record["chosen"] = chosen
            log.append(record)
    export(paths_)


def export(paths_: SetPaths) -> tuple[int, int]:
    """Rewrite the set's SFT and preference datasets from the logs (accepted/edited rows only),
    atomically (a set with none has no dataset files); returns (rows exported, rows pending)."""
    from nanochat_tui.rundir import write_atomic

    rows = review_rows(paths_)
    source = f"synth/{paths_.name}"
    sft, pref = [], []
    for row in rows:
        if row.review not in TRAINABLE:
            continue
        meta = {"id": row.id, "review": row.review, "principle": row.principle, "source": source}
        messages = [
            {"role": "user", "content": row.prompt},
            {"role": "assistant", "content": row.chosen},
        ]
        sft.append(json.dumps({**meta, "messages": messages}, ensure_ascii=False))
        pref.append(
            json.dumps(
                {**meta, "prompt": row.prompt, "chosen": row.chosen, "rejected": row.answer},
                ensure_ascii=False,
            )
        )
    for path, lines in ((paths_.sft, sft), (paths_.pref, pref)):
        if lines:
            write_atomic(path, "".join(line + "\n" for line in lines))
        else:  # an empty dataset would only fail later, in training
            path.unlink(missing_ok=True)
    return len(sft), sum(row.review == "pending" for row in rows)
