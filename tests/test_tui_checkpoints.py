"""Checkpoints pane: list, filter by compatibility, reasons for the highlighted row, load, refuse nanochat."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static

from nanochat_tui import paths
from nanochat_tui.tui.app import NanochatApp
from nanochat_tui.tui.screens.checkpoints import CheckpointsPane
from screens_fixtures import populate


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def fabricated(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path / "nanochat"))
    return populate(paths.runs_dir(), tmp_path / "nanochat")


def reasons(app) -> str:
    return str(app.query_one("#ckpt-reasons", Static).render())


@pytest.mark.anyio
async def test_filter_reasons_and_load(fabricated):
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        pane = app.query_one(CheckpointsPane)
        table = app.query_one(DataTable)
        assert [(r.run, r.step, r.compatible) for r in pane.rows] == [
            ("fits", 200, True),
            ("fits", 100, True),
            ("deeper", 50, False),
            ("d12", 21400, False),
        ]
        assert table.row_count == 4
        # highlight the incompatible d4 run: reasons + remedies shown
        await pilot.press("down", "down")
        text = reasons(app)
        assert "depth" in text and "set model.depth=4" in text
        assert "plugins.megacontext" in text and "set plugins.megacontext.enabled=true" in text
        # nanochat row: read-only, with the prefab tip
        await pilot.press("down")
        text = reasons(app)
        assert "read-only" in text and "or pick prefab ten" in text
        await pilot.press("enter")
        await pilot.pause()
        assert app.state.checkpoint is None  # refused
        # filter: compatible only
        await pilot.press("f")
        assert table.row_count == 2
        assert "compatible only" in str(app.query_one("#ckpt-summary", Static).render())
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.state.checkpoint is not None
        assert app.state.checkpoint.step == 100
        assert app.state.checkpoint.run_dir == fabricated["fits"]
        assert "loaded: fits step 100" in str(app.query_one("#ckpt-summary", Static).render())
        await pilot.press("f")
        assert table.row_count == 4


@pytest.mark.anyio
async def test_adopt_shape_and_refresh(fabricated):
    # start on this pane so the Config pane is not mounted: its prefab Select currently reacts to a
    # broadcast ConfigChanged with a bogus "switch prefab?" question (reported to the shell owner)
    (paths.config_dir() / "state.json").write_text('{"last_pane": "checkpoints", "prefab": "tiny"}')
    app = NanochatApp()
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        pane = app.query_one(CheckpointsPane)
        await pilot.press("down", "down", "a")
        await pilot.pause()
        assert app.state.config.model.depth == 4
        assert app.state.config.run.init_from == str(fabricated["deeper"] / "checkpoints" / "50")
        # now the d4 run fits (plugins flag still differs) and the tiny ones do not
        by_run = {(r.run, r.step): r for r in pane.rows}
        assert [p.field for p in by_run[("deeper", 50)].problems] == ["plugins.megacontext"]
        assert not by_run[("fits", 200)].compatible
        # a new checkpoint appears after refresh
        from screens_fixtures import make_run

        make_run(paths.runs_dir(), "later", app.state.config.model.model_dump(), [10])
        await pilot.press("r")
        assert any(r.run == "later" for r in pane.rows)


@pytest.mark.anyio
async def test_delete_asks_first(fabricated):
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        step_dir = fabricated["fits"] / "checkpoints" / "200"
        await pilot.press("delete")
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause()
        assert step_dir.exists()
        await pilot.press("delete")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert not step_dir.exists()
        assert len(app.query_one(CheckpointsPane).rows) == 3


@pytest.mark.anyio
async def test_pin_marks_and_metric_steps(fabricated):
    """Pinned rows are marked and p toggles the pin in the run's pins.json; a val bpb measured at
    an earlier step says so in the table and in the reasons."""
    from nanochat_tui.rundir import read_pins

    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        pane = app.query_one(CheckpointsPane)
        table = app.query_one(DataTable)
        assert [(r.step, r.pinned) for r in pane.rows if r.run == "fits"] == [
            (200, False),
            (100, True),
        ]
        row200 = table.get_row_at(0)
        assert "@150" in str(row200[4]) and str(row200[3]) == ""
        assert str(table.get_row_at(1)[3]) == "★"
        text = reasons(app)
        assert "measured at step 150, 50 steps earlier" in text and "saved: interval" in text
        assert "not pinned" in text
        await pilot.press("p")
        await pilot.pause()
        assert read_pins(fabricated["fits"]) == {100, 200}
        assert "★ pinned" in reasons(app) and str(table.get_row_at(0)[3]) == "★"
        await pilot.press("p")
        await pilot.pause()
        assert read_pins(fabricated["fits"]) == {100}
        await pilot.press("down", "down", "down", "p")  # the nanochat row: read-only
        await pilot.pause()
        assert read_pins(fabricated["fits"]) == {100}


@pytest.mark.anyio
async def test_damaged_checkpoints_are_marked_and_refused(fabricated):
    """Issue 25.9: a checkpoint whose data file was cut short since it was saved (sizes recorded
    at commit, checkpoint_files.py), or whose tree metadata no longer parses, showed `✓ yes`.
    Now it is `✗ damaged` with our one-line reason and the newest intact step; Enter refuses it."""
    from nanochat_tui import checkpoint_files

    fits = fabricated["fits"] / "checkpoints"
    for step in (100, 200):
        checkpoint_files.record(fits / str(step))
    data = fits / "200" / "state" / "data"
    data.write_bytes(data.read_bytes()[:5000])  # a copy cut short
    (fabricated["deeper"] / "checkpoints" / "50" / "state" / "_METADATA").write_text("{trunc")
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        pane = app.query_one(CheckpointsPane)
        table = app.query_one(DataTable)
        assert [(r.run, r.step, r.damage) for r in pane.rows][:3] == [
            ("fits", 200, "state/data is 5,000 bytes, 200,000 when saved (truncated)"),
            ("fits", 100, None),
            ("deeper", 50, "state/_METADATA is not valid JSON"),
        ]
        assert [str(table.get_row_at(i)[6]) for i in range(3)] == [
            "✗ damaged",
            "✓ yes",
            "✗ damaged",
        ]
        summary = str(app.query_one("#ckpt-summary", Static).render())
        assert "2 damaged: fits/200, deeper/50" in summary
        text = reasons(app)
        assert "✗ damaged: state/data is 5,000 bytes, 200,000 when saved (truncated)" in text
        assert "load step 100 of this run (its newest intact one)" in text
        await pilot.press("enter")
        await pilot.pause()
        assert app.state.checkpoint is None  # refused
        await pilot.press("f")  # compatible only: the damaged ones are not offered
        assert [r.step for r in pane.visible_rows] == [100]
