"""Runs pane end to end: start a tiny run from the TUI, watch it on the Live pane, checkpoint,
patch the lr multiplier, stop with confirmation; and reattach to a detached run from a new app."""

from __future__ import annotations

import os

import pytest

from helpers import events_of, tiny_overrides
from helpers import pilot_wait_for as wait_for

TINY = tiny_overrides()


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_start_watch_checkpoint_patch_stop_from_the_tui():
    from nanochat_tui.tui.app import NanochatApp

    app = NanochatApp(prefab="tiny", overrides=[*TINY, "train.num_iterations=20000"])
    try:
        await _start_watch_checkpoint_patch_stop(app)
    finally:
        run = app.state.run
        if run is not None and run.is_alive():
            run.inbox.stop()
            run.join(60)


async def _start_watch_checkpoint_patch_stop(app):
    from nanochat_tui.tui.screens.live import LivePane
    from nanochat_tui.tui.screens.runs import RunsPane

    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await wait_for(pilot, lambda: app.active_pane == "runs", 10, "runs pane")
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause()
        for ch in "ui-run":
            await pilot.press(ch)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.state.run is not None, 60, "run handle")
        run = app.state.run
        assert run.mode == "thread" and run.run_dir.name == "ui-run"
        await wait_for(pilot, lambda: app.active_pane == "live", 10, "switch to live")
        live = app.query_one(LivePane)
        await wait_for(pilot, lambda: live.store.step >= 5, 90, "steps on the live pane")
        grid = live.grid
        await wait_for(pilot, lambda: grid.redraws >= 2, 10, "panel redraws")
        loss_panel = next(p for p in grid.panels if p.spec.type == "loss")
        progress = next(p for p in grid.panels if p.spec.type == "progress")
        assert loss_panel.redraw_count >= 1 and progress.redraw_count >= 1
        assert "step" in str(progress.query_one("#progress-body").render())
        # the run's run_start event told the status bar which device trains
        assert "device: cpu" in str(app.status_bar.render())
        assert live.store.get("loss").count >= 5

        await pilot.press("4")
        await wait_for(pilot, lambda: app.active_pane == "runs", 10, "runs pane again")
        await pilot.pause()
        await pilot.press("c")
        await wait_for(
            pilot,
            lambda: any(e.get("reason") == "manual" for e in events_of(run.run_dir, "checkpoint")),
            60,
            "manual checkpoint",
        )
        ck = [e for e in events_of(run.run_dir, "checkpoint") if e.get("reason") == "manual"][-1]
        assert os.path.isdir(ck["path"])

        await pilot.press("p")
        await pilot.pause()
        for ch in "optim.lr_multiplier=nope":
            await pilot.press(ch)
        await pilot.press("enter")  # invalid: error shown inline, modal stays
        await pilot.pause()
        assert "lr_multiplier" in str(app.screen.query_one("#prompt-error").render())
        for _ in "nope":
            await pilot.press("backspace")
        for ch in "0.5":
            await pilot.press(ch)
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: any(e.get("ok") for e in events_of(run.run_dir, "patch")),
            120,  # applied at the next step boundary, which is slow on a loaded 2-core box
            "patch event",
        )
        patch = [e for e in events_of(run.run_dir, "patch") if e.get("ok")][-1]
        assert patch["changes"] == {"optim.lr_multiplier": 0.5}
        await wait_for(
            pilot,
            lambda: any(e.get("lr_multiplier") == 0.5 for e in events_of(run.run_dir, "step")),
            30,
            "patched steps",
        )

        await pilot.press("s")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: bool(events_of(run.run_dir, "run_end")), 60, "run_end")
        assert events_of(run.run_dir, "run_end")[-1]["status"] == "stopped"
        run.join(30)
        runs_pane = app.query_one(RunsPane)
        runs_pane.action_refresh_runs()
        await wait_for(
            pilot, lambda: any(r.status == "stopped" for r in runs_pane.runs), 10, "stopped in list"
        )


@pytest.mark.anyio
async def test_detached_run_survives_app_exit_and_reattaches_with_full_history():
    from nanochat_tui.config import load_config
    from nanochat_tui.orchestrator.runner import pid_alive, start_run
    from nanochat_tui.tui.app import NanochatApp
    from nanochat_tui.tui.screens.live import LivePane
    from nanochat_tui.tui.screens.runs import RunsPane

    handle = start_run(
        load_config("tiny", [*TINY, "train.num_iterations=20000"]), name="bg", mode="detached"
    )
    pid = handle.pid
    try:
        app = NanochatApp(prefab="tiny")
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("4")
            await pilot.pause()
            await wait_for(
                pilot, lambda: len(events_of(handle.run_dir, "step")) >= 3, 120, "steps of bg"
            )
        assert pid_alive(pid), "the detached run must survive the app exiting"

        app2 = NanochatApp(prefab="tiny")
        async with app2.run_test(size=(120, 40)) as pilot:
            await pilot.press("4")
            runs = app2.query_one(RunsPane)
            await wait_for(pilot, lambda: any(r.name == "bg" for r in runs.runs), 20, "bg listed")
            row = next(i for i, r in enumerate(runs.runs) if r.name == "bg")
            runs.query_one("#runs-table").move_cursor(row=row)
            await pilot.press("enter")
            await wait_for(pilot, lambda: app2.active_pane == "live", 10, "live pane")
            assert app2.state.run.mode == "detached"
            live = app2.query_one(LivePane)
            step_then = len(events_of(handle.run_dir, "step"))
            await wait_for(
                pilot,
                lambda: (
                    live.store.first_step == 1
                    and live.store.get("loss") is not None
                    and live.store.get("loss").count >= step_then
                ),
                30,
                "full history",
            )
            first = live.store.step
            await wait_for(pilot, lambda: live.store.step > first, 60, "run keeps going")
            assert handle.is_alive()
            await pilot.press("4")
            await pilot.pause()
            await pilot.press("s")
            await pilot.pause()
            await pilot.press("y")
            await wait_for(
                pilot, lambda: bool(events_of(handle.run_dir, "run_end")), 60, "detached run_end"
            )
        assert events_of(handle.run_dir, "run_end")[-1]["status"] == "stopped"
        assert handle.wait(30)
    finally:
        if handle.is_alive():
            os.kill(pid, 15)
