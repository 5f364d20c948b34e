"""Designer pane as a user drives it: open it (D), apply a template, edit the embedding and a
block, delete blocks, undo/redo, save as prefab and train (p); the run's run_start reports the
design's params and model.blocks."""

from __future__ import annotations

import pytest

from helpers import events_of, tiny_overrides
from helpers import pilot_wait_for as wait_for


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def _edit(pilot, pane, text: str) -> None:
    from textual.widgets import Input

    await pilot.press("e")
    field = pane.query_one("#designer-edit", Input)
    await wait_for(pilot, lambda: field.has_focus, 10, "edit line focused")
    for ch in text:
        await pilot.press("space" if ch == " " else "equals_sign" if ch == "=" else ch)
    await pilot.press("enter")
    await wait_for(pilot, lambda: field.value == "", 10, f"edit {text!r} applied")


@pytest.mark.anyio
async def test_design_then_save_as_prefab_and_train(tmp_path):
    from nanochat_tui.bundled.designer.estimates import estimate
    from nanochat_tui.bundled.designer.pane import DesignerPane
    from nanochat_tui.config.loader import list_prefabs
    from nanochat_tui.tui.app import NanochatApp

    app = NanochatApp(prefab="tiny", overrides=[*tiny_overrides(), "train.num_iterations=2"])
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("D")
            await wait_for(pilot, lambda: app.active_pane == "designer", 20, "designer pane")
            pane = app.query_one(DesignerPane)
            await wait_for(pilot, lambda: pane.history is not None, 10, "design")
            await pilot.press("t")  # nanochat-d4 at the config's context and vocabulary
            await wait_for(pilot, lambda: pane.design.name == "nanochat-d4", 10, "template")
            assert pane.design.width == 256 and len(pane.design.blocks) == 4
            await _edit(pilot, pane, "width=64")  # the embedding row is selected
            await pilot.press("down")
            await _edit(pilot, pane, "n_head=4 n_kv_head=2 mlp=swiglu")
            await pilot.press("down", "x", "x")  # two fewer blocks
            await wait_for(pilot, lambda: len(pane.design.blocks) == 2, 10, "deleted")
            await pilot.press("u")
            await wait_for(pilot, lambda: len(pane.design.blocks) == 3, 10, "undo")
            await pilot.press("r")
            await wait_for(pilot, lambda: len(pane.design.blocks) == 2, 10, "redo")
            design = pane.design
            blocks = [b for _, b in design.blocks]
            assert (blocks[0].n_head, blocks[0].n_kv_head, blocks[0].mlp) == (4, 2, "swiglu")
            assert blocks[1].n_head == 2 and design.width == 64
            problems = str(pane.query_one("#designer-problems").render())
            assert "valid" in problems
            want = estimate(design, app.state.config).params
            await pilot.press("p")
            await wait_for(pilot, lambda: app.state.run is not None, 120, "run started")
            assert "design-nanochat-d4" in list_prefabs()
            assert app.state.prefab_name == "design-nanochat-d4"
            run = app.state.run
            await wait_for(
                pilot, lambda: events_of(run.run_dir, "run_start"), 180, "run_start event"
            )
            start = events_of(run.run_dir, "run_start")[0]
            assert start["num_params"] == want
            assert start["config"]["model"]["width"] == 64
            assert [b["mlp"] for b in start["config"]["model"]["blocks"]] == ["swiglu", "relu2"]
            await wait_for(pilot, lambda: not run.is_alive(), 300, "run finished")
            assert events_of(run.run_dir, "step"), "the design trained"
    finally:
        run = app.state.run if app.state is not None else None
        if run is not None and run.is_alive():
            run.inbox.stop()
            run.join(60)


@pytest.mark.anyio
async def test_export_the_designs_forward_pass_as_onnx():
    import onnx

    from nanochat_tui.bundled.designer.pane import DesignerPane, designs_dir
    from nanochat_tui.tui.app import NanochatApp

    app = NanochatApp(prefab="tiny", overrides=tiny_overrides())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("D")
        await wait_for(pilot, lambda: app.active_pane == "designer", 20, "designer pane")
        pane = app.query_one(DesignerPane)
        await wait_for(pilot, lambda: pane.history is not None, 10, "design")
        await pilot.press("t")
        await wait_for(pilot, lambda: pane.design.name == "nanochat-d4", 10, "template")
        await _edit(pilot, pane, "width=64")
        await pilot.press("down")
        await _edit(pilot, pane, "n_head=2 mlp=swiglu window=16")
        out = designs_dir() / "nanochat-d4.onnx"
        await pilot.press("X")
        await wait_for(pilot, out.exists, 120, "model.onnx written")
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["input_ids"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert any(n.op_type == "Sigmoid" for n in model.graph.node)  # the SwiGLU block is in it
