"""The loaded checkpoint as the start of new runs (issue 25.14): the status bar and the new-run
dialog say so, u and the palette's "Unload checkpoint" clear it (state.json too), and a run whose
model does not fit it asks first: from scratch or cancel (a Designer MoE design from a dense
checkpoint failed after compiling: no weights for the router)."""

from __future__ import annotations

import json

import pytest
from textual.widgets import Static

from helpers import events_of, tiny_overrides
from helpers import pilot_wait_for as wait_for
from nanochat_tui import paths
from nanochat_tui.tui import init_from
from nanochat_tui.tui.app import NanochatApp
from nanochat_tui.tui.screens.confirm import ConfirmScreen
from nanochat_tui.tui.screens.prompt import PromptModal
from nanochat_tui.tui.state import state_path
from screens_fixtures import populate

pytestmark = pytest.mark.anyio
SIZE = (160, 48)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def fabricated(tmp_path, monkeypatch):
    """Run 'fits' (tiny's shape, steps 100 and 200) and 'deeper' (depth 4, step 50)."""
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path / "nanochat"))
    return populate(paths.runs_dir(), tmp_path / "nanochat")


async def started(pilot) -> None:
    await wait_for(pilot, lambda: pilot.app.started, 30, "app start")
    await pilot.pause()


async def load(pilot, downs: int) -> None:
    """As a user: Checkpoints (2), highlight a row, Enter."""
    await pilot.press("2")
    await wait_for(pilot, lambda: pilot.app.active_pane == "checkpoints", 10, "checkpoints")
    await pilot.pause()
    await pilot.press(*["down"] * downs, "enter")
    await wait_for(pilot, lambda: pilot.app.state.checkpoint is not None, 10, "loaded")


def status(app) -> str:
    return str(app.status_bar.render())


async def new_run_dialog(pilot) -> str:
    """Runs (4), n: the dialog's text."""
    await pilot.press("4")
    await wait_for(pilot, lambda: pilot.app.active_pane == "runs", 10, "runs pane")
    await pilot.pause()
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, PromptModal), 10, "dialog")
    return " ".join(str(s.render()) for s in pilot.app.screen.query(Static))


async def test_the_loaded_checkpoint_is_named_and_unloaded_by_key_and_palette(fabricated):
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert "new runs from" not in status(app)
        await load(pilot, 0)  # fits@200
        assert "new runs from fits@200" in status(app)
        text = await new_run_dialog(pilot)
        assert "starting from checkpoint fits step 200" in text
        await pilot.press("escape")
        # the config a run starts from: run.init_from = the checkpoint (it fits)
        got = []
        init_from.choose_config(app, app.state.config, got.append, what="run 'x'")
        assert got[0].run.init_from == str(fabricated["fits"] / "checkpoints" / "200")
        # u on Checkpoints unloads it, also from state.json
        await pilot.press("2")
        await pilot.pause()
        await pilot.press("u")
        await pilot.pause()
        assert app.state.checkpoint is None and "new runs from" not in status(app)
        assert json.loads(state_path().read_text())["checkpoint"] is None
        text = await new_run_dialog(pilot)
        assert "starting from scratch" in text
        await pilot.press("escape")
        # the palette's "Unload checkpoint", from another pane
        await load(pilot, 1)  # fits@100
        await pilot.press("5", "ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"unload", "enter")
        await wait_for(pilot, lambda: app.state.checkpoint is None, 10, "unloaded")
        assert "new runs from" not in status(app)


async def test_a_run_that_does_not_fit_the_checkpoint_asks_first(fabricated):
    """Runs pane: the d4 checkpoint with the d2 tiny config; the dialog warns, the start asks;
    Cancel starts nothing."""
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await load(pilot, 2)  # deeper@50
        text = await new_run_dialog(pilot)
        assert "loaded checkpoint deeper step 50 does not fit this config (depth:" in text
        await pilot.press(*"r1", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10, "question")
        assert "deeper step 50 does not fit config 'tiny'" in app.screen.question
        assert "✗ depth: checkpoint has 4 layers, config 2" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert app.state.run is None and not (paths.runs_dir() / "r1").exists()
        assert app.state.checkpoint is not None  # still loaded (for Chat)


async def test_designer_moe_design_from_a_dense_checkpoint_asks_then_trains_from_scratch(
    fabricated,
):
    """The issue's path: a dense checkpoint loaded, the Designer's MoE template, p. Before, the
    run took the checkpoint as run.init_from and failed after compiling (no router weights)."""
    from nanochat_tui.bundled.designer.pane import DesignerPane

    app = NanochatApp(prefab="tiny", overrides=[*tiny_overrides(), "train.num_iterations=2"])
    run = None
    try:
        async with app.run_test(size=SIZE) as pilot:
            await started(pilot)
            await load(pilot, 0)  # fits@200: dense, tiny-shaped
            await pilot.press("D")
            await wait_for(pilot, lambda: app.active_pane == "designer", 20, "designer pane")
            pane = app.query_one(DesignerPane)
            await wait_for(pilot, lambda: pane.history is not None, 10, "design")
            for _ in range(4):  # d4, d12, d20, then d4-moe
                await pilot.press("t")
                await pilot.pause()
            assert pane.design.name == "nanochat-d4-moe"
            await pilot.press("e", *"width", "equals_sign", *"64", "enter")  # a smaller model
            await wait_for(pilot, lambda: pane.design.width == 64, 10, "width edited")
            await pilot.press("p")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 20, "question")
            question = app.screen.question
            assert "fits step 200 does not fit config 'design-nanochat-d4-moe'" in question
            assert "✗ plugins.moe: checkpoint trained with moe off, config has it on" in question
            await pilot.press("n")
            await pilot.pause()
            assert app.state.run is None and not list(paths.runs_dir().glob("design-*"))
            await pilot.press("D")  # p switched to Runs (focused after the question: D switches)
            await wait_for(pilot, lambda: app.active_pane == "designer", 20, "designer again")
            await pilot.press("p")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 20, "question")
            await pilot.press("y")
            await wait_for(pilot, lambda: app.state.run is not None, 120, "run started")
            run = app.state.run
            await wait_for(pilot, lambda: not run.is_alive(), 300, "run finished")
            assert events_of(run.run_dir, "step"), "the MoE design trained"
            [start] = events_of(run.run_dir, "run_start")
            assert not start["config"]["run"]["init_from"]
            assert "initialised_from" not in start
            assert [e for e in events_of(run.run_dir, "run_end")][-1]["status"] == "finished"
    finally:
        if run is not None and run.is_alive():
            run.inbox.stop()
            run.join(60)
