"""Never lose a run: steer from the Live pane, resume, quit with stop or background, re-attach.

Real tiny runs on CPU (thread runs inside the app, a detached process for the background)."""

from __future__ import annotations

import os
import time

import pytest

from helpers import events_of, tiny_overrides
from helpers import pilot_wait_for as wait_for
from nanochat_tui.telemetry.jsonl import read_events

TINY = tiny_overrides()


@pytest.fixture
def anyio_backend():
    return "asyncio"


def start_thread_run(name: str):
    from nanochat_tui.config import load_config
    from nanochat_tui.orchestrator.runner import start_run

    return start_run(
        load_config("tiny", [*TINY, "train.num_iterations=20000"]), name=name, mode="thread"
    )


@pytest.mark.anyio
async def test_steer_from_live_event_log_resume_and_quit_stops_gracefully():
    from nanochat_tui.orchestrator.runner import summarize
    from nanochat_tui.tui.app import NanochatApp
    from nanochat_tui.tui.commands import collect_commands
    from nanochat_tui.tui.screens.live import LivePane

    run = start_thread_run("steer")
    app = NanochatApp(prefab="tiny")
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            app.attach_handle(run)
            await wait_for(pilot, lambda: app.active_pane == "live", 10, "live pane")
            live = app.query_one(LivePane)
            await wait_for(pilot, lambda: live.store.step >= 2, 120, "steps")
            # the palette offers the attached run's actions on any pane
            await pilot.press("1")
            await pilot.pause()
            titles = [t for t, _h, _cb in collect_commands(app)]
            assert "Run steer: checkpoint now" in titles and "Run steer: stop" in titles
            await pilot.press("5")
            await pilot.pause()
            live.focus()
            await pilot.press("c")
            await wait_for(
                pilot,
                lambda: any(
                    e.get("reason") == "manual" for e in events_of(run.run_dir, "checkpoint")
                ),
                60,
                "manual checkpoint from Live",
            )
            await pilot.press("l")  # the event log, on any screen
            await wait_for(
                pilot,
                lambda: app.event_log is not None and app.event_log.lines_shown >= 2,
                10,
                "event log lines",
            )
            log_text = "\n".join(str(line.text) for line in app.event_log.lines)
            assert "checkpoint (manual)" in log_text and "run start" in log_text
            await pilot.press("s", "y")
            await wait_for(pilot, lambda: not run.is_alive(), 60, "stopped")
            assert summarize(run.run_dir).status == "stopped"
            stopped_at = events_of(run.run_dir, "run_end")[-1]["step"]
            titles = [t for t, _h, _cb in collect_commands(app)]
            assert "Run steer: resume" in titles
            await pilot.press("u")  # resume from the Live pane: same dir, a new thread
            await wait_for(pilot, lambda: app.state.run is not run, 30, "resumed handle")
            resumed = app.state.run
            await wait_for(
                pilot,
                lambda: max(e["step"] for e in events_of(run.run_dir, "step")) > stopped_at + 1,
                120,
                "steps after resume",
            )
            await pilot.press("q")
            await pilot.pause()
            await pilot.press("s")  # stop gracefully, then quit
            await wait_for(pilot, lambda: not app.is_running, 120, "app exit")
        assert not resumed.is_alive()
        summary = summarize(run.run_dir)
        assert summary.status == "stopped" and summary.detail != "crashed"
        assert events_of(run.run_dir, "run_end")[-1]["status"] == "stopped"
        assert events_of(run.run_dir, "checkpoint")[-1]["reason"] == "stop"
    finally:
        for handle in (run, app.state.run):
            if handle is not None and handle.is_alive():
                handle.inbox.stop()
                handle.join(60)


@pytest.mark.anyio
async def test_quit_moves_run_to_background_without_losing_steps_and_reattaches():
    from nanochat_tui.orchestrator.runner import DetachedRun, attach, summarize
    from nanochat_tui.tui.app import NanochatApp

    run = start_thread_run("bg-handoff")
    app = NanochatApp(prefab="tiny")
    detached = None
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            app.attach_handle(run)
            await wait_for(
                pilot, lambda: len(events_of(run.run_dir, "step")) >= 2, 120, "thread steps"
            )
            await pilot.press("q")
            await pilot.pause()
            await pilot.press("b")
            await wait_for(pilot, lambda: not app.is_running, 180, "app exit")
        detached = attach(run.run_dir)
        assert isinstance(detached, DetachedRun) and detached.is_alive()
        stop_ck = events_of(run.run_dir, "checkpoint")[-1]
        assert stop_ck["reason"] == "stop"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(events_of(run.run_dir, "run_start")) < 2:
            time.sleep(0.2)
        while time.monotonic() < deadline:
            steps = [e["step"] for e in events_of(run.run_dir, "step")]
            if steps and steps[-1] > stop_ck["step"] + 1:
                break
            time.sleep(0.2)
        # the detached process resumed from the stop checkpoint: no step lost, none repeated
        events = read_events(run.run_dir / "events.jsonl")
        second_start = [i for i, e in enumerate(events) if e.get("type") == "run_start"][1]
        assert events[second_start].get("resumed_from_step") == stop_ck["step"]
        after = [e["step"] for e in events[second_start:] if e.get("type") == "step"]
        assert after[0] == stop_ck["step"] + 1
        assert summarize(run.run_dir).status == "running"

        app2 = NanochatApp(prefab="tiny")  # re-attached on restart
        async with app2.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app2.started, 30, "start")
            await pilot.pause()
            assert app2.state.run is not None and app2.state.run.mode == "detached"
            assert app2.state.run.run_dir == run.run_dir.resolve()
            app2.state.run.stop()
            assert detached.wait(60)
            await pilot.press("q")
            await pilot.pause()
        assert summarize(run.run_dir).status == "stopped"
    finally:
        if run.is_alive():
            run.inbox.stop()
            run.join(60)
        if detached is not None and detached.is_alive():
            os.kill(detached.pid, 15)
