"""Chat/eval transcripts: one JSONL file per session under ``run_dir/transcripts/``.

Each line is one message: ``{"role", "content", "time", "stats"?, "mode"?, "checkpoint"?, "step"?}``.
Lines are appended and flushed as messages complete, so a crash loses at most the reply in flight.
No Textual, no JAX.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nanochat_tui.errors import UserError

TRANSCRIPTS = "transcripts"


def transcripts_dir(run_dir: Path) -> Path:
    return Path(run_dir) / TRANSCRIPTS


def new_session_id(now: datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS-xxxx``: sorts by time, unique enough for one person's sessions."""
    now = now or datetime.now()
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


class TranscriptWriter:
    """Appends messages of one session; the file appears with the first message."""

    def __init__(self, run_dir: Path, session: str | None = None, **context: Any) -> None:
        self.session = session or new_session_id()
        self.path = transcripts_dir(run_dir) / f"{self.session}.jsonl"
        self.context = {k: v for k, v in context.items() if v is not None}
        self.count = 0

    def append(
        self, role: str, content: str, stats: dict[str, Any] | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Write one message line and return it."""
        record: dict[str, Any] = {
            "role": role,
            "content": content,
            "time": datetime.now().timestamp(),
        }
        if stats:
            record["stats"] = stats
        record.update(self.context)
        record.update({k: v for k, v in extra.items() if v is not None})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        except OSError as err:
            raise UserError(
                f"cannot write transcript {self.path}: {err.strerror}",
                "check that the run directory is writable and the disk is not full",
            ) from None
        self.count += 1
        return record


@dataclass
class TranscriptInfo:
    """A transcript file, summarised for the browser list."""

    path: Path
    session: str
    messages: int
    started: datetime | None
    first_prompt: str
    mode: str

    @property
    def title(self) -> str:
        when = f"{self.started:%Y-%m-%d %H:%M}" if self.started else self.session
        prompt = self.first_prompt.replace("\n", " ")
        if len(prompt) > 50:
            prompt = prompt[:49] + "…"
        return f"{when}  {self.mode:<8} {self.messages:>3} msgs  {prompt}"


def read_transcript(path: Path) -> list[dict[str, Any]]:
    """The messages of one transcript; a torn last line (crash mid-write) is skipped."""
    out: list[dict[str, Any]] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise UserError(f"cannot read transcript {path}: {err.strerror}") from None
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "role" in record:
            out.append(record)
    return out


def list_transcripts(run_dir: Path) -> list[TranscriptInfo]:
    """Transcripts of a run, newest first."""
    folder = transcripts_dir(run_dir)
    if not folder.is_dir():
        return []
    found: list[TranscriptInfo] = []
    for path in folder.glob("*.jsonl"):
        try:
            messages = read_transcript(path)
        except UserError:
            continue
        first = next((m for m in messages if m.get("role") in ("user", "prompt")), None)
        started = (
            datetime.fromtimestamp(messages[0]["time"])
            if messages and "time" in messages[0]
            else None
        )
        found.append(
            TranscriptInfo(
                path=path,
                session=path.stem,
                messages=len(messages),
                started=started,
                first_prompt=str(first.get("content", "")) if first else "",
                mode=str(messages[0].get("mode", "chat")) if messages else "chat",
            )
        )
    return sorted(found, key=lambda t: t.session, reverse=True)
