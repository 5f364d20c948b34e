"""Start-up phases on the Live header and the event log's lines, fed from recorded events; a run
attached at the last exit is re-attached (running) or offered (ended) on restart."""

from __future__ import annotations

import json
import os
import time

import pytest

from nanochat_tui import paths
from nanochat_tui.orchestrator.records import process_start_time
from nanochat_tui.panels.store import MetricStore
from nanochat_tui.tui.widgets.eventlog import notable_line


@pytest.fixture
def anyio_backend():
    return "asyncio"


def test_starting_phase_until_the_first_step():
    store = MetricStore()
    assert store.starting_phase() is None
    store.ingest([{"type": "phase", "time": 100.0, "phase": "tokenizer", "elapsed_s": 0.5}])
    assert store.starting_phase(now=102.0) == ("tokenizer", 2.5, "")
    store.ingest(
        [
            {
                "type": "phase",
                "time": 110.0,
                "phase": "first_step",
                "elapsed_s": 10.0,
                "detail": "jit",
            }
        ]
    )
    assert store.starting_phase(now=113.0) == ("first step", 13.0, "jit")
    store.ingest([{"type": "step", "time": 120.0, "step": 1, "loss": 4.0}])
    assert store.starting_phase() is None


@pytest.mark.parametrize(
    ("event", "style", "text"),
    [
        ({"type": "step", "step": 3}, None, None),
        ({"type": "heartbeat"}, None, None),
        (
            {"type": "patch", "step": 7, "ok": True, "changes": {"optim.lr_multiplier": 0.5},
             "message": "applied at step 7"},
            "cyan", "@7 patch: optim.lr_multiplier=0.5 applied at step 7",
        ),
        ({"type": "patch", "step": 7, "ok": False, "changes": {"x": 1}}, "bold red", "@7 patch refused: x=1"),
        ({"type": "checkpoint", "step": 9, "reason": "manual"}, "green", "@9 checkpoint (manual)"),
        ({"type": "eval", "step": 10, "val_bpb": 1.23456}, "magenta", "@10 eval val_bpb 1.2346"),
        ({"type": "log", "level": "warning", "message": "slow"}, "yellow", "warning: slow"),
        (
            {"type": "error", "message": "OOM", "remediation": "lower the batch"},
            "bold red", "error: OOM → lower the batch",
        ),
        (
            {"type": "sink", "name": "wandb", "status": "retrying", "dropped": 3, "error": "timeout"},
            "yellow", "sink wandb: retrying, 3 dropped (timeout)",
        ),
        ({"type": "phase", "phase": "compile", "elapsed_s": 4.25}, "blue", "phase compile +4.2s"),
        ({"type": "run_end", "step": 12, "status": "stopped"}, "bold", "@12 run end: stopped"),
    ],
)  # fmt: skip
def test_event_log_lines(event, style, text):
    line = notable_line(event)
    assert line == (None if style is None else (style, text))


@pytest.mark.anyio
async def test_live_header_shows_the_start_up_phase_from_recorded_events(tmp_path):
    from nanochat_tui.tui.app import NanochatApp
    from nanochat_tui.tui.screens.live import LivePane

    run_dir = tmp_path / "young-run"
    run_dir.mkdir()
    now = time.time()
    events = [
        {"type": "phase", "time": now - 3, "phase": "data", "elapsed_s": 1.0},
        {"type": "run_start", "time": now - 2, "num_iterations": 50},
        {
            "type": "phase",
            "time": now - 1,
            "phase": "compile",
            "elapsed_s": 3.0,
            "detail": "step fn",
        },
    ]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await pilot.pause()
        live = app.query_one(LivePane)
        live.show_run_dir(run_dir)
        deadline = time.monotonic() + 10
        while live.store.counts.get("phase", 0) < 2 and time.monotonic() < deadline:
            await pilot.pause(0.05)
        live._tick(force=True)
        header = live.query_one("#live-header")._last_content.plain
        assert "starting: compile" in header and "(step fn)" in header and "step 0" not in header
        with (run_dir / "events.jsonl").open("a") as fh:
            fh.write(json.dumps({"type": "step", "time": now, "step": 1, "loss": 4.0}) + "\n")
        while live.store.step < 1 and time.monotonic() < deadline:
            await pilot.pause(0.05)
        live._tick(force=True)
        header = live.query_one("#live-header")._last_content.plain
        assert "starting" not in header and "step 1" in header


def _fake_run(name: str, status: str | None, alive: bool):
    run_dir = paths.runs_dir() / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("name: tiny\n")
    record = {"name": name, "mode": "detached", "status": "running", "started": time.time()}
    if alive:
        record.update(pid=os.getpid(), pid_started=process_start_time(os.getpid()))
    (run_dir / "run.json").write_text(json.dumps(record))
    events = [{"type": "run_start", "time": 1.0}, {"type": "step", "time": 2.0, "step": 5}]
    if status:
        events.append({"type": "run_end", "time": 3.0, "step": 5, "status": status})
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return run_dir


def _remember(run_dir):
    (paths.config_dir()).mkdir(parents=True, exist_ok=True)
    (paths.config_dir() / "state.json").write_text(
        json.dumps({"prefab": "tiny", "last_pane": "runs", "run": str(run_dir)})
    )


@pytest.mark.anyio
async def test_restart_reattaches_a_running_run():
    from nanochat_tui.tui.app import NanochatApp

    run_dir = _fake_run("still-going", None, alive=True)
    _remember(run_dir)
    app = NanochatApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.state.run is not None and app.state.run.run_dir == run_dir
        assert app.offered_run is None


@pytest.mark.anyio
async def test_restart_offers_a_run_that_ended_meanwhile():
    from nanochat_tui.tui.app import NanochatApp
    from nanochat_tui.tui.commands import collect_commands

    run_dir = _fake_run("done-now", "stopped", alive=False)
    _remember(run_dir)
    app = NanochatApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.state.run is None and app.offered_run is not None
        commands = {t: cb for t, _h, cb in collect_commands(app)}
        attach = commands["Attach to run done-now (attached at the last exit)"]
        attach()
        await pilot.pause()
        await pilot.pause()
        assert app.state.run is not None and app.state.run.run_dir == run_dir
        assert app.active_pane == "live"
        assert "Run done-now: resume" in [t for t, _h, _cb in collect_commands(app)]
