"""The control inbox: how a caller steers a running training loop. Pure Python (no JAX).

The train loop calls ``drain()`` once per optimizer step and acts on each command in order:
  {"cmd": "checkpoint"}                     save a checkpoint now (reason "manual")
  {"cmd": "stop"}                           save a checkpoint and end with status "stopped"
  {"cmd": "patch", "changes": {key: val}}   re-validated via config.validate_patch; a "patch"
                                            event records the outcome either way
The same commands arrive from the TUI thread, a detached run's control socket, or tests.
"""

from __future__ import annotations

import queue
from typing import Any


class ControlInbox:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()

    def put(self, command: dict[str, Any]) -> None:
        if command.get("cmd") not in ("checkpoint", "stop", "patch"):
            raise ValueError(f"unknown control command {command!r}")
        self._queue.put(dict(command))

    def checkpoint_now(self) -> None:
        self.put({"cmd": "checkpoint"})

    def stop(self) -> None:
        self.put({"cmd": "stop"})

    def patch(self, changes: dict[str, Any]) -> None:
        self.put({"cmd": "patch", "changes": dict(changes)})

    def drain(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out
