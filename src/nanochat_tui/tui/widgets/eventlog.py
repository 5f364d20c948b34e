"""The event log panel: what happened to the attached run, on any screen (key l toggles it).

Patches, checkpoints, evaluations, warnings and errors, telemetry sink health, start-up phases,
run start and end: one line each, newest at the bottom. ``notable_line`` is the pure part (event ->
line or None); the widget tails ``events.jsonl`` in a thread only while it is shown, and skips
step and heartbeat lines with a byte test instead of parsing them (a run streams hundreds a
second).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.widgets import RichLog
from textual.worker import get_current_worker

from nanochat_tui.tui.worker_errors import ReportsWorkerErrors

_SKIP = (b'{"type":"step"', b'{"type":"heartbeat"', b'{"type":"sample"')
TAIL_INTERVAL_S = 0.25


def _fmt_changes(changes: Any) -> str:
    if not isinstance(changes, dict):
        return str(changes)
    return " ".join(f"{k}={v}" for k, v in changes.items())


def notable_line(event: dict[str, Any]) -> tuple[str, str] | None:
    """(style, text) for an event worth a line in the log, or None (steps, heartbeats, …)."""
    kind = event.get("type")
    step = event.get("step")
    at = f"@{step} " if isinstance(step, int) else ""
    if kind == "patch":
        ok = event.get("ok")
        what = "patch" if ok else "patch refused"
        detail = _fmt_changes(event.get("changes"))
        message = event.get("message") or ""
        return ("cyan" if ok else "bold red"), f"{at}{what}: {detail} {message}".rstrip()
    if kind == "checkpoint":
        reason = event.get("reason", "")
        return ("green" if reason == "manual" else "dim"), f"{at}checkpoint ({reason})"
    if kind == "eval":
        parts = [f"{k} {event[k]:.4f}" for k in ("val_bpb", "val_loss") if k in event]
        return "magenta", f"{at}eval " + " ".join(parts)
    if kind == "log":
        level = str(event.get("level", "info"))
        if level == "info":
            return "dim", f"{at}{event.get('message', '')}"
        return (
            "yellow" if level == "warning" else "bold red"
        ), f"{at}{level}: {event.get('message', '')}"
    if kind == "error":
        fix = event.get("remediation")
        return "bold red", f"{at}error: {event.get('message', '')}" + (f" → {fix}" if fix else "")
    if kind == "sink":
        status = event.get("status")
        style = {"ok": "green", "retrying": "yellow"}.get(str(status), "bold red")
        text = f"sink {event.get('name')}: {status}"
        if event.get("dropped"):
            text += f", {event['dropped']} dropped"
        if event.get("error"):
            text += f" ({event['error']})"
        return style, text
    if kind == "phase":
        elapsed = event.get("elapsed_s")
        when = f" +{elapsed:.1f}s" if isinstance(elapsed, (int, float)) else ""
        detail = f" {event['detail']}" if event.get("detail") else ""
        return "blue", f"phase {event.get('phase')}{when}{detail}"
    if kind == "run_start":
        resumed = event.get("resumed_from_step")
        return "bold", "run start" + (f" (resumed from step {resumed})" if resumed else "")
    if kind == "run_end":
        return "bold", f"{at}run end: {event.get('status')}"
    return None


class EventLog(ReportsWorkerErrors, RichLog):
    """A docked log of the attached run's notable events; tails only while displayed."""

    can_focus = False  # read-only: no tab stop (it scrolls with the mouse wheel)

    DEFAULT_CSS = """
    EventLog {
        dock: bottom; height: 8; border-top: solid $accent; background: $surface;
        padding: 0 1;
    }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_lines=500, wrap=False, markup=False, **kwargs)
        self.run_dir: Path | None = None
        self.lines_shown = 0
        self._generation = 0

    def follow(self, run_dir: Path | None) -> None:
        """Show ``run_dir``'s events (from the start of its log), or nothing."""
        if run_dir is not None and self.run_dir is not None and Path(run_dir) == self.run_dir:
            return
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._generation += 1
        self.clear()
        self.lines_shown = 0
        if self.run_dir is not None and self.display:
            self._tail(self.run_dir, self._generation)

    def set_shown(self, shown: bool) -> None:
        """Show (re-reading the log from its start) or hide (the tail stops: costs nothing)."""
        self.display = shown
        self._generation += 1
        if shown and self.run_dir is not None:
            self.clear()
            self.lines_shown = 0
            self._tail(self.run_dir, self._generation)

    def add_events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            line = notable_line(event)
            if line is None:
                continue
            style, text = line
            stamp = event.get("time")
            clock = time.strftime("%H:%M:%S", time.localtime(stamp)) if stamp else "--:--:--"
            self.write(Text.assemble((clock + " ", "dim"), (text, style)))
            self.lines_shown += 1

    @work(
        thread=True,
        name="Reading the event log",
        group="event-log",
        exclusive=True,
        exit_on_error=False,
    )
    def _tail(self, run_dir: Path, generation: int) -> None:
        from nanochat_tui.rundir import EVENTS
        from nanochat_tui.telemetry.jsonl import JsonlTailer

        worker = get_current_worker()
        tailer = JsonlTailer(run_dir / EVENTS, skip=_SKIP)
        while not worker.is_cancelled and generation == self._generation:
            events = tailer.read_new()
            if events and generation == self._generation:
                self.app.call_from_thread(self.add_events, events)
            elif not events:
                time.sleep(TAIL_INTERVAL_S)
