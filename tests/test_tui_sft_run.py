"""An SFT run started from the TUI like a user would: Runs pane, `n`, a name, enter; the Live
header names the stage and the run fine-tunes the base checkpoint it was pointed at."""

from __future__ import annotations

import pytest

from helpers import pilot_wait_for as wait_for
from helpers import start_run_from_runs_pane, tiny_overrides
from nanochat_tui import rundir


@pytest.mark.anyio
async def test_sft_run_from_the_tui(tmp_path) -> None:
    from nanochat_tui.config import load_config
    from nanochat_tui.jax_engine.train import train
    from nanochat_tui.tui.app import NanochatApp
    from nanochat_tui.tui.screens.live import LivePane

    base = tmp_path / "base"
    config = load_config("tiny", tiny_overrides({"train.num_iterations": 2}))
    assert train(config, base, lambda e: None).status == "finished"
    overrides = tiny_overrides({"run.init_from": str(base), "train.num_iterations": 4})
    app = NanochatApp(prefab="sft-only", overrides=overrides)
    async with app.run_test(size=(160, 48)) as pilot:
        await start_run_from_runs_pane(pilot, app, "sft-run")
        live = app.query_one(LivePane)
        await wait_for(pilot, lambda: bool(live.store.run_end), 240, "run_end")
        live._update_header()
        assert " sft [" in live.query_one("#live-header")._last_content.plain
        run_dir = app.state.run.run_dir
    meta = rundir.latest_checkpoint(run_dir).meta
    assert meta["stage"] == "sft" and meta["step"] == 4
    assert meta["lineage"]["init_from"] == str(base)
