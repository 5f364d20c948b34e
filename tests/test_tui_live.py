"""Live pane editing with Pilot: switch screens, add/edit/remove panels, change the refresh rate,
save the layout to a prefab (confirm before overwrite), and follow RunChanged."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from nanochat_tui.config import load_prefab

DATA = Path(__file__).parent / "data"


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def _type(pilot, text: str) -> None:
    for ch in text:
        await pilot.press("space" if ch == " " else ch)


@pytest.mark.anyio
async def test_edit_live_screens_and_save_layout(tmp_path):
    from nanochat_tui.orchestrator.runner import attach
    from nanochat_tui.tui.app import NanochatApp
    from nanochat_tui.tui.messages import RunChanged
    from nanochat_tui.tui.screens.live import LivePane

    run_dir = tmp_path / "fixture-run"
    run_dir.mkdir()
    shutil.copy(DATA / "live_events.jsonl", run_dir / "events.jsonl")

    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await pilot.pause()
        live = app.query_one(LivePane)
        assert [s.name for s in live.screens] == ["overview", "device"]  # from prefabs/tiny.yaml
        assert [p.spec.type for p in live.grid.panels] == [
            "progress",
            "loss",
            "validation",
            "timers",
        ]

        app.post_message(RunChanged(attach(run_dir)))
        deadline = time.monotonic() + 10
        while live.store.step != 240 and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert live.store.first_step == 1 and live.store.status == "stopped"

        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert live.current.name == "device"
        assert [p.spec.type for p in live.grid.panels] == ["device", "samples"]
        await pilot.press("left_square_bracket")
        await pilot.pause()

        await pilot.press("a")
        await pilot.pause()
        await _type(pilot, "bogus")
        await pilot.press("enter")
        await pilot.pause()
        assert "unknown panel type" in str(app.screen.query_one("#prompt-error").render())
        for _ in "bogus":
            await pilot.press("backspace")
        await _type(pilot, "loss source=val_loss above=3")
        await pilot.press("enter")
        await pilot.pause()
        panels = live.grid.panels
        assert len(panels) == 5 and panels[-1].spec.source == "val_loss"
        assert panels[-1].spec.thresholds == {"above": 3.0}

        panels[-1].focus()
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("end")
        await _type(pilot, " smoothing=0.9")
        await pilot.press("enter")
        await pilot.pause()
        assert live.current.panels[-1].options == {"smoothing": 0.9}

        live.grid.panels[0].focus()
        await pilot.press("x")
        await pilot.pause()
        assert live.current.panels[0].type == "loss"

        await pilot.press("plus")
        await pilot.pause()
        assert live.current.refresh_ms == 125

        await pilot.press("w")
        await pilot.pause()
        app.screen.query_one("#prompt-input").value = ""
        await _type(pilot, "mylayout")
        await pilot.press("enter")
        await pilot.pause()
        saved = load_prefab("mylayout")
        assert saved.ui.screens[0].refresh_ms == 125
        assert [p.type for p in saved.ui.screens[0].panels] == [
            "loss",
            "validation",
            "timers",
            "loss",
        ]
        assert saved.model.depth == app.state.config.model.depth

        live.grid.panels[0].focus()
        await pilot.press("x")  # change again, then overwrite (asks first)
        await pilot.press("w")
        await pilot.pause()
        app.screen.query_one("#prompt-input").value = "mylayout"
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("n")  # refuse: file unchanged
        await pilot.pause()
        assert len(load_prefab("mylayout").ui.screens[0].panels) == 4
        await pilot.press("w")
        await pilot.pause()
        app.screen.query_one("#prompt-input").value = "mylayout"
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert len(load_prefab("mylayout").ui.screens[0].panels) == 3

        titles = [t for t, _h, _cb in live.palette_commands()]
        assert "Live: add panel" in titles and "Live: refresh every 250 ms" in titles


@pytest.mark.anyio
async def test_refresh_keeps_its_rate_under_load_shows_the_real_one_and_skips_when_hidden(
    tmp_path,
):
    from nanochat_tui.panels.store import MetricStore
    from nanochat_tui.tui.app import NanochatApp
    from nanochat_tui.tui.screens.live import LivePane

    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await pilot.pause()
        live = app.query_one(LivePane)
        store = MetricStore()
        store.ingest([{"type": "run_start", "time": 1.0, "num_iterations": 100}])
        live._set_store(store)

        def stream(step: int) -> None:  # a new event since the last redraw: the run streams
            store.ingest([{"type": "step", "time": 1.0 + step, "step": step, "loss": 3.0}])

        # every tick with new events redraws: no back-off while the run streams
        for step in range(1, 6):
            redraws = live.grid.redraws
            stream(step)
            live._tick()
            assert live.grid.redraws == redraws + 1
        # a loaded machine delivers ticks late: the header says so instead of the configured rate
        target = live.current.refresh_ms
        live.measured_ms = None
        live._last_tick = time.perf_counter() - 3 * target / 1000
        stream(6)
        live._tick()
        assert live.effective_ms() >= 2.5 * target
        live._update_header()
        assert f"⟳{target}ms (actual" in live.query_one("#live-header")._last_content.plain
        live._restart_timer()  # a new rate starts a new measurement
        assert live.effective_ms() == target

        await pilot.press("4")  # another pane: the hidden Live pane is not redrawn
        await pilot.pause()
        redraws = live.grid.redraws
        stream(7)
        live._tick()
        assert live.grid.redraws == redraws and not live._shown()


@pytest.mark.anyio
async def test_header_names_the_stage_the_run_trains(tmp_path):
    from nanochat_tui.panels.store import MetricStore
    from nanochat_tui.tui.app import NanochatApp
    from nanochat_tui.tui.screens.live import LivePane

    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await pilot.pause()
        live = app.query_one(LivePane)
        store = MetricStore()
        store.ingest([{"type": "run_start", "time": 1.0, "num_iterations": 9, "stage": "sft"}])
        store.ingest([{"type": "step", "time": 2.0, "step": 3, "loss": 2.5}])
        live._set_store(store)
        live.run_dir, live.run_name = tmp_path, "chat.2-sft"
        live._update_header()
        header = live.query_one("#live-header")._last_content.plain
        assert "chat.2-sft sft [" in header and "step 3" in header


@pytest.mark.anyio
async def test_an_attached_run_shows_its_own_screens():
    """Issue 25.17: with tiny active, attaching (Runs, enter) to an MoE run shows that run's
    screens (its config.yaml: the expert heat-map), not the prefab's; another prefab keeps them;
    a run with no config.yaml shows the active config's."""
    from nanochat_tui import paths
    from nanochat_tui.config.loader import to_yaml
    from nanochat_tui.tui.app import NanochatApp
    from nanochat_tui.tui.messages import ConfigChanged
    from nanochat_tui.tui.screens.live import LivePane

    run_dir = paths.runs_dir() / "moe-run"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(to_yaml(load_prefab("tiny-moe")))
    shutil.copy(DATA / "moe_events.jsonl", run_dir / "events.jsonl")
    bare = paths.runs_dir() / "bare-run"  # events only, as an older run or a copied log
    bare.mkdir()
    shutil.copy(DATA / "live_events.jsonl", bare / "events.jsonl")

    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await pilot.pause()
        live = app.query_one(LivePane)
        assert [s.name for s in live.screens] == ["overview", "device"]  # tiny's
        await pilot.press("4")
        await pilot.pause()
        runs = app.active_pane_widget()
        await _wait(pilot, lambda: any(r.name == "moe-run" for r in runs.runs), "run listed")
        row = next(i for i, r in enumerate(runs.runs) if r.name == "moe-run")
        runs.query_one("#runs-table").move_cursor(row=row)
        await pilot.press("enter")
        await _wait(pilot, lambda: app.active_pane == "live", "attached: on Live")
        await _wait(
            pilot, lambda: [s.name for s in live.screens] == ["overview", "experts"], "run's"
        )
        assert "moe-heatmap" in [p.spec.type for p in live.grid.panels]
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert [p.spec.type for p in live.grid.panels] == ["moe-heatmap"]

        app.state.set_prefab("tiny-chat")  # another prefab while attached: the run's screens stay
        app.post_message(ConfigChanged(app.state.config))
        await pilot.pause()
        await pilot.pause()
        assert [s.name for s in live.screens] == ["overview", "experts"]

        await pilot.press("4")
        await pilot.pause()
        row = next(i for i, r in enumerate(runs.runs) if r.name == "bare-run")
        runs.query_one("#runs-table").move_cursor(row=row)
        await pilot.press("enter")
        await _wait(pilot, lambda: live.run_name == "bare-run", "attached to the bare run")
        want = [s.name for s in load_prefab("tiny-chat").ui.screens] or ["overview", "device"]
        await _wait(pilot, lambda: [s.name for s in live.screens] == want, "active config's")


async def _wait(pilot, cond, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)
