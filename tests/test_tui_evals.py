"""Evals pane (key 9): saved results across runs and checkpoints with the change against the
parent checkpoint, and a real evaluation of the loaded checkpoint started with e."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from textual.widgets import DataTable, Input

from helpers import pilot_wait_for
from nanochat_tui import paths
from nanochat_tui.tui.app import NanochatApp
from nanochat_tui.tui.screens.evals import EvalsPane, result_rows
from nanochat_tui.tui.screens.prompt import PromptModal


def fake_run(name: str, init_from: str | None, results: dict[int, float]) -> Path:
    """A run directory with a config.yaml and saved results (as `eval --task` writes them)."""
    from nanochat_tui.jax_engine.task_eval import save_result

    run_dir = paths.runs_dir() / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"run": {"init_from": init_from}}))
    (run_dir / "events.jsonl").write_text("")
    stage = "sft" if init_from else "pretrain"
    for step, acc in results.items():
        record = {"task": "stdlib-modules", "kind": "choice", "n": 30, "correct": round(30 * acc)}
        record |= {"accuracy": acc, "mean_gold_nll": 2.0, "items": []}
        save_result(run_dir, record, step=step, stage=stage)
    return run_dir


def test_rows_compare_against_the_parent_checkpoint():
    base = fake_run("p.1-base", None, {100: 0.30, 200: 0.40})
    sft = fake_run("p.2-sft", str(base / "checkpoints" / "200"), {50: 0.50, 150: 0.35})
    rows = result_rows([base, sft])
    got = {(r["run"], r["step"]): r["delta"] for r in rows}
    assert got[("p.1-base", 200)] is None
    assert got[("p.2-sft", 50)] == pytest.approx(0.10)  # against base step 200, not 100
    assert got[("p.2-sft", 150)] == pytest.approx(-0.05)


@pytest.mark.anyio
async def test_evals_pane_lists_and_evaluates_the_loaded_checkpoint(trained_run, screen_text):
    base = fake_run("p.1-base", None, {200: 0.40})
    fake_run("p.2-sft", str(base / "checkpoints" / "200"), {50: 0.50})
    run_dir = paths.runs_dir() / "trained"
    shutil.copytree(trained_run, run_dir)
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("9")
        pane = app.query_one(EvalsPane)
        await pilot_wait_for(pilot, lambda: pane.loads >= 1, 30, "results")
        assert app.query_one(DataTable).row_count == 2
        text = screen_text(app)
        assert "p.2-sft" in text and "+0.100" in text and "0.500" in text
        # e with no checkpoint loaded says how to load one
        await pilot.press("e")
        await pilot.pause()
        assert not pane.running
        # load the trained checkpoint (key 2, enter) and evaluate it on the embedded task
        await pilot.press("2")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert app.state.checkpoint is not None and app.state.checkpoint.run_dir == run_dir
        await pilot.press("9")
        await pilot.pause()
        await pilot.press("e")
        await pilot_wait_for(pilot, lambda: isinstance(app.screen, PromptModal), 10, "prompt")
        assert app.screen.query_one("#prompt-input", Input).value == "stdlib-modules"
        # the count before enter: on a busy machine the evaluation (and its refresh) can finish
        # while press() still waits for the screen to settle
        loads = pane.loads
        await pilot.press("enter")
        await pilot_wait_for(
            pilot, lambda: not pane.running and pane.loads > loads, 240, "evaluation"
        )
        saved = list(run_dir.glob("evals/stdlib-modules/step_*.json"))
        assert len(saved) == 1
        ours = [r for r in pane.rows if r["run"] == "trained"]
        assert ours and ours[0]["n"] == 30 and 0.0 <= ours[0]["accuracy"] <= 1.0
        assert app.query_one(DataTable).row_count == 3
