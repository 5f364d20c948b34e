"""events.jsonl: append-only writer and an incremental tailer (reads only what is new)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from nanochat_tui.telemetry.events import Event


class JsonlWriter:
    """Appends one event per line and flushes, so a crash loses at most the line being written."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
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


def _jsonable(value: Any) -> Any:
    try:
        return value.item()  # numpy / jax scalars
    except AttributeError:
        return str(value)


class JsonlTailer:
    """Reads complete new lines since the last call; a partial last line waits for its newline."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
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
        lines = data.split(b"\n")
        self._partial = lines.pop()
        events = []
        for line in lines:
            if line.strip():
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue  # a torn line from a crashed writer: skip it
        return events


def read_events(path: Path) -> list[Event]:
    return JsonlTailer(path).read_new()
