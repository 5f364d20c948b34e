"""The Preferences panel: it charts reward margins/accuracies from step events and lists the best
and worst held-out pairs of the last eval event; and a DPO run started from the TUI updates it."""

from __future__ import annotations

import json

import pytest

from helpers import pilot_wait_for as wait_for
from helpers import start_run_from_runs_pane, tiny_overrides


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _events(steps: int) -> list[dict]:
    out: list[dict] = [{"type": "run_start", "time": 1.0, "num_iterations": steps, "stage": "dpo"}]
    for step in range(1, steps + 1):
        aux = {"rewards/margins": 0.1 * step, "rewards/accuracies": min(1.0, 0.5 + 0.05 * step)}
        out.append({"type": "step", "time": 1.0 + step, "step": step, "loss": 0.69, "aux": aux})
    pair = {"id": "stdlib:os.rmdir", "prompt": "q", "chosen": "`os.rmdir`: Remove a directory.",
            "rejected": "`os.rmdir`: Return a random int.", "margin": 2.5}  # fmt: skip
    worst = {**pair, "id": "stdlib:json.dumps", "margin": -1.25}
    out.append({
        "type": "eval", "time": 50.0, "step": steps, "eval_rewards/accuracies": 0.875,
        "eval_rewards/margins": 1.5, "val_loss": 2.0, "pairs": {"best": [pair], "worst": [worst]},
    })  # fmt: skip
    return out


@pytest.mark.anyio
async def test_preferences_panel_draws_margins_accuracies_and_pairs() -> None:
    from textual.app import App

    from nanochat_tui.config.schema import PanelSpec, ScreenSpec
    from nanochat_tui.panels.preferences import PreferencesPanel
    from nanochat_tui.panels.store import MetricStore
    from nanochat_tui.tui.widgets.panel_grid import PanelGrid

    store = MetricStore()

    class Host(App):
        def compose(self):
            yield PanelGrid(store)

    async with Host().run_test(size=(120, 40)) as pilot:
        grid = pilot.app.query_one(PanelGrid)
        await grid.show_screen(ScreenSpec(name="t", panels=[PanelSpec(type="preferences")]))
        await pilot.pause()
        grid.tick()
        panel = grid.panels[0]
        assert isinstance(panel, PreferencesPanel)
        assert "no preference metrics yet" in str(panel.query_one(".headline").render())
        store.ingest(_events(10))
        assert grid.tick() is True
        await pilot.pause()
        head = str(panel.query_one(".headline").render())
        assert "margin 1" in head and "accuracy 100%" in head
        assert "held-out @10: accuracy 88%" in head
        pairs = str(panel.query_one(".pairs").render())
        assert "best 2.5 stdlib:os.rmdir" in pairs and "worst -1.25 stdlib:json.dumps" in pairs
        assert "+ `os.rmdir`: Remove a directory." in pairs


@pytest.mark.anyio
async def test_dpo_run_from_the_tui_updates_the_preferences_panel(tmp_path) -> None:
    from nanochat_tui.config import load_config
    from nanochat_tui.jax_engine.train import train
    from nanochat_tui.tui.app import NanochatApp
    from nanochat_tui.tui.screens.live import LivePane

    base = tmp_path / "base"
    config = load_config("tiny", tiny_overrides({"train.num_iterations": 2}))
    assert train(config, base, lambda e: None).status == "finished"
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text("".join(
        json.dumps({"id": str(i), "prompt": f"What is {i} + {i}?", "chosen": f"It is {2 * i}.",
                    "rejected": f"Maybe {i}."}) + "\n"
        for i in range(16)
    ))  # fmt: skip
    overrides = tiny_overrides({
        "run.init_from": str(base), "data.source": str(prefs), "data.val_fraction": 0.25,
        "train.num_iterations": 6, "train.eval_every": 2,
    })  # fmt: skip
    app = NanochatApp(prefab="dpo-only", overrides=overrides)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await start_run_from_runs_pane(pilot, app, "dpo-run")
            live = app.query_one(LivePane)
            panel = next(p for p in live.grid.panels if p.spec.type == "preferences")
            await wait_for(
                pilot, lambda: live.store.last_eval.get("pairs"), 240, "a held-out evaluation"
            )
            await wait_for(
                pilot,
                lambda: "held-out @" in str(panel.query_one(".headline").render()),
                20,
                "the panel's held-out line",
            )
            assert live.store.get("aux.rewards/margins").count >= 2
            assert "best " in str(panel.query_one(".pairs").render())
            await wait_for(pilot, lambda: bool(live.store.run_end), 240, "run_end")
            assert live.store.run_end["status"] == "finished"
    finally:
        run = app.state.run
        if run is not None and run.is_alive():
            run.inbox.stop()
            run.join(60)
