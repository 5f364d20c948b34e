"""Snapshots of the Live pane (from the recorded tests/data/live_events.jsonl) and the Runs pane,
at 80×24 and 160×48."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from textual.app import App, ComposeResult

from nanochat_tui.config.schema import Config, PanelSpec, ScreenSpec, UIConfig

DATA = Path(__file__).parent / "data"
SIZES = [(80, 24), (160, 48)]

UI = UIConfig(
    screens=[
        ScreenSpec(
            name="overview",
            refresh_ms=250,
            columns=2,
            panels=[
                PanelSpec(type="progress"),
                PanelSpec(type="loss", source="loss", thresholds={"above": 3.0}),
                PanelSpec(type="validation", source="val_bpb"),
                PanelSpec(type="timers"),
            ],
        ),
        ScreenSpec(name="samples", panels=[PanelSpec(type="samples", width=2)]),
    ]
)


class _State:
    def __init__(self) -> None:
        self.config = Config(ui=UI)
        self.prefab_name = "snapshot"
        self.checkpoint = None
        self.run = None


class LiveHost(App):
    """Just the Live pane, on a copy of the recorded run."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.state = _State()
        self.run_dir = run_dir

    def compose(self) -> ComposeResult:
        from nanochat_tui.tui.screens.live import LivePane

        yield LivePane()

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        self.query_one("LivePane").show_run_dir(self.run_dir, name="fixture-run")


class RunsHost(App):
    def __init__(self) -> None:
        super().__init__()
        self.state = _State()

    def compose(self) -> ComposeResult:
        from nanochat_tui.tui.screens.runs import RunsPane

        yield RunsPane()

    def on_mount(self) -> None:
        self.theme = "textual-dark"


@pytest.fixture
def recorded_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "fixture-run"
    run_dir.mkdir()
    shutil.copy(DATA / "live_events.jsonl", run_dir / "events.jsonl")
    return run_dir


async def _until_loaded(pilot) -> None:
    pane = pilot.app.query_one("LivePane")
    deadline = time.monotonic() + 10
    while pane.store.run_end == {} and time.monotonic() < deadline:
        await pilot.pause(0.05)
    pane._tick(force=True)
    await _charts_built(pilot)


async def _charts_built(pilot) -> None:
    """Charts are built off the event loop: wait until the builder is idle and its results shown."""
    from nanochat_tui.panels.chart import chart_builder

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        await pilot.pause()
        if chart_builder().idle():
            await pilot.pause()
            await pilot.pause()
            if chart_builder().idle():
                return
        await pilot.pause(0.02)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_live_pane_snapshot(snap_compare, recorded_run, size):
    assert snap_compare(LiveHost(recorded_run), terminal_size=size, run_before=_until_loaded)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_runs_pane_snapshot(snap_compare, monkeypatch, size):
    from nanochat_tui import paths

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    runs = paths.runs_dir()
    rows = [
        ("alpha", "finished", 300, "thread"),
        ("beta", "stopped", 120, "detached"),
        ("gamma", "failed", 7, "thread"),
    ]
    for i, (name, status, step, mode) in enumerate(rows):
        d = runs / name
        d.mkdir()
        started = 1_700_000_000 + i * 3600
        (d / "run.json").write_text(
            json.dumps(
                {"name": name, "mode": mode, "status": status, "started": started, "host": "snap"}
            )
        )
        with (d / "events.jsonl").open("w") as fh:
            fh.write(json.dumps({"type": "run_start", "time": started}) + "\n")
            fh.write(
                json.dumps({"type": "step", "time": started + 1, "step": step, "loss": 3.0}) + "\n"
            )
            fh.write(
                json.dumps({"type": "run_end", "time": started + 2, "step": step, "status": status})
                + "\n"
            )
        import os

        os.utime(d, (started, started))

    async def loaded(pilot) -> None:
        pane = pilot.app.query_one("RunsPane")
        deadline = time.monotonic() + 10
        while len(pane.runs) < 3 and time.monotonic() < deadline:
            await pilot.pause(0.05)
        await pilot.pause()

    try:
        assert snap_compare(RunsHost(), terminal_size=size, run_before=loaded)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
