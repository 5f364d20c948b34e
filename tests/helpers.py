"""Shared test helpers: the smallest real training run (1 layer, width 64, seq 64, vocab 512, CPU)
and waiting for an event in a run's events.jsonl; installing a plugin as a distribution."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

TINY: dict[str, Any] = {
    "model.depth": 1,
    "model.aspect_ratio": 64,
    "model.head_dim": 32,
    "model.sequence_len": 64,
    "model.vocab_size": 512,
    "data.max_chars": 200_000,
    "data.tokenizer_chars": 50_000,
    "train.device_batch_size": 4,
    "train.total_batch_size": 256,
    "train.eval_every": 0,
    "train.eval_tokens": 2048,
    "train.sample_every": 0,
    "train.save_every": 0,
}


class Recorder:
    """An ``on_event`` sink for ``train``: keeps every event (each must be JSON-serialisable) and,
    given a control inbox, stops the run after step ``stop_at``."""

    def __init__(self, stop_at: int | None = None, control: Any = None) -> None:
        self.events: list[dict] = []
        self.stop_at, self.control = stop_at, control

    def __call__(self, event: dict) -> None:
        json.dumps(event)
        self.events.append(event)
        if event["type"] == "step" and event["step"] == self.stop_at and self.control:
            self.control.stop()

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    def losses(self) -> dict[int, float]:
        return {e["step"]: e["loss"] for e in self.of("step")}


async def start_run_from_runs_pane(pilot, app, name: str) -> None:
    """As a user: Runs pane (4), new run (n), type ``name``, enter; waits until the app switched
    to Live with the run's handle."""
    await pilot.press("4")
    await pilot_wait_for(pilot, lambda: app.active_pane == "runs", 10, "runs pane")
    await pilot.pause()
    await pilot.press("n")
    await pilot.pause()
    for ch in name:
        await pilot.press(ch)
    await pilot.press("enter")
    await pilot_wait_for(pilot, lambda: app.state.run is not None, 60, "run handle")
    await pilot_wait_for(pilot, lambda: app.active_pane == "live", 10, "switch to live")


def tiny(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """``TINY`` with ``changes`` applied (dotted keys), as an overrides dict."""
    return {**TINY, **(changes or {})}


def tiny_overrides(changes: dict[str, Any] | None = None) -> list[str]:
    """The same as ``--set key=value`` strings."""
    return [f"{key}={value}" for key, value in tiny(changes).items()]


def install(site: Path, dist: str, version: str, entry_points: dict[str, str]) -> None:
    """Make ``dist`` an installed distribution in ``site`` (what pip would leave there) whose
    entry points in the group ``nanochat_tui.plugins`` are ``entry_points`` (name -> ref)."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {ref}\n" for name, ref in entry_points.items())
    (info / "entry_points.txt").write_text(f"[nanochat_tui.plugins]\n{lines}")


def wait_for_event(path: Path, predicate, timeout: float = 60.0) -> dict:
    """The first event in ``path`` (events.jsonl) that satisfies ``predicate``, polling."""
    from nanochat_tui.telemetry.jsonl import read_events

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in read_events(path):
            if predicate(event):
                return event
        time.sleep(0.05)
    raise AssertionError(f"no matching event in {path} within {timeout}s")


async def pilot_wait_for(pilot, cond, timeout: float = 60.0, what: str = "condition") -> None:
    """Pause the Pilot until ``cond()`` holds; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{_app_report(pilot.app)}")


def _app_report(app) -> str:
    """What a timed-out UI test needs to be diagnosed: the app's workers and notifications, and
    every thread's stack (a hung worker thread shows where it waits)."""
    import sys
    import threading
    import traceback

    lines = [f"screens: {[type(s).__name__ for s in app.screen_stack]}"]
    lines.append(f"workers: {[(w.name, w.group, w.state.name) for w in app.workers]}")
    lines += [f"notification: {n.severity}: {n.message}" for n in app._notifications]
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        lines.append(f"--- thread {names.get(ident, ident)}")
        lines += [s.rstrip() for s in traceback.format_stack(frame)[-12:]]
    return "\n".join(lines)


def events_of(run_dir: Path, type_: str) -> list[dict]:
    """The events of ``type_`` in ``run_dir``'s events.jsonl."""
    from nanochat_tui.telemetry.jsonl import read_events

    return [e for e in read_events(run_dir / "events.jsonl") if e.get("type") == type_]
