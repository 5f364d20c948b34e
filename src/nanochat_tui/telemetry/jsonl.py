"""events.jsonl: the append-only writer, and the one way to read it.

A line is an event only when it is complete (ends in a newline) and parses as a JSON object. So a
reader never takes a line the writer is still writing for an event (a tailer waits for its
newline), and skips a torn line (a crash or a full disk cut it) instead of failing; the writer
ends a torn last line before it appends, so the next event is not glued onto it and lost.
``parse_line`` / ``parse_lines`` are that rule; ``JsonlTailer`` follows a growing file,
``read_events`` reads a whole one and ``read_head_and_tail`` the two ends of a long one.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from nanochat_tui.telemetry.events import Event


class JsonlWriter:
    """Appends one event per line and flushes, so a crash loses at most the line being written.
    A file whose last line was cut (no final newline) gets that newline first."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = _ends_mid_line(self.path)
        self._fh = self.path.open("a", encoding="utf-8")
        if torn:
            self._fh.write("\n")
            self._fh.flush()
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        line = json.dumps(event, default=_jsonable, separators=(",", ":"))
        with self._lock:
            if not self._fh.closed:
                self._fh.write(line + "\n")
                self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def _ends_mid_line(path: Path) -> bool:
    """True when ``path`` is non-empty and its last byte is not a newline (a torn last line)."""
    try:
        with path.open("rb") as fh:
            if fh.seek(0, os.SEEK_END) == 0:
                return False
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"
    except OSError:
        return False


def _jsonable(value: Any) -> Any:
    try:
        return value.item()  # numpy / jax scalars
    except AttributeError:
        return str(value)


def parse_line(line: bytes) -> Event | None:
    """The event on one complete line; None for a blank, torn or hand-broken line, or JSON that
    is not an object."""
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def parse_lines(data: bytes, skip: tuple[bytes, ...] = ()) -> list[Event]:
    """The events on ``data``'s complete lines, in order. What follows the last newline (a line
    being written, or a torn one) is not a line yet; lines starting with a ``skip`` prefix are
    not parsed (a cheap filter for a reader that ignores, say, step events)."""
    events = []
    for line in data[: data.rfind(b"\n") + 1].split(b"\n"):
        if skip and line.startswith(skip):
            continue
        event = parse_line(line)
        if event is not None:
            events.append(event)
    return events


class JsonlTailer:
    """Reads complete new lines since the last call; a partial last line waits for its newline.
    ``skip``: line prefixes not parsed (see ``parse_lines``)."""

    def __init__(self, path: Path, skip: tuple[bytes, ...] = ()) -> None:
        self.path = Path(path)
        self.skip = skip
        self._offset = 0
        self._partial = b""

    def read_new(self) -> list[Event]:
        """Events appended since the last call; a ``stat`` only when nothing is new."""
        try:
            if os.stat(self.path).st_size <= self._offset:
                return []
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        complete = data.rfind(b"\n") + 1
        self._partial = data[complete:]
        return parse_lines(data[:complete], self.skip)


def read_events(path: Path) -> list[Event]:
    """Every event of a whole events.jsonl (empty when it is missing)."""
    return JsonlTailer(path).read_new()


def read_head_and_tail(path: Path, head_bytes: int, tail_bytes: int) -> list[Event]:
    """The events of the first ``head_bytes`` and the last ``tail_bytes`` of ``path``, in order
    (all of them for a smaller file); lines cut by either window are dropped. Empty when the
    file cannot be read."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size <= head_bytes + tail_bytes:
                return parse_lines(fh.read())
            head = fh.read(head_bytes)
            fh.seek(size - tail_bytes)
            tail = fh.read(tail_bytes)
    except OSError:
        return []
    return parse_lines(head) + parse_lines(tail[tail.find(b"\n") + 1 :])
