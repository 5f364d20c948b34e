"""The expert heat-map panel rendered from a recorded MoE run (tests/data/moe_events.jsonl: a real
tiny run, 2 layers × 4 experts, 6 steps): live, scrubbed back in time, thresholds; snapshots at
80×24 and 160×48."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.app import App, ComposeResult

from nanochat_tui.config.schema import PanelSpec
from nanochat_tui.panels.store import MetricStore

DATA = Path(__file__).parent / "data"
SIZES = [(80, 24), (160, 48)]
pytestmark = pytest.mark.anyio


def recorded_store() -> MetricStore:
    store = MetricStore()
    store.ingest(json.loads(line) for line in (DATA / "moe_events.jsonl").read_text().splitlines())
    return store


class HeatmapHost(App):
    def __init__(self, thresholds: dict[str, float] | None = None) -> None:
        super().__init__()
        self.store = recorded_store()
        self.spec = PanelSpec(type="moe-heatmap", thresholds=thresholds or {})

    def compose(self) -> ComposeResult:
        from nanochat_tui.panels.builtin import panel_class

        yield panel_class("moe-heatmap")(self.spec)

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        self.refresh_panel()

    def refresh_panel(self) -> None:
        with self.store.lock:
            self.query_one("ExpertHeatmap").update_from(self.store)


def _lines(app: HeatmapHost) -> list[str]:
    return app.query_one("#heatmap-body").render().plain.splitlines()


def _events() -> list[dict]:
    return [json.loads(x) for x in (DATA / "moe_events.jsonl").read_text().splitlines()]


async def test_cells_are_load_relative_to_uniform_and_scrub_through_history():
    steps = [e for e in _events() if e["type"] == "step"]
    app = HeatmapHost()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        lines = _lines(app)
        want = [f"{steps[-1]['aux'][f'moe/L1/E{j}'] * 4:.1f}" for j in range(4)]
        assert lines[2].split()[1:] == want and "step 6 (live)" in lines[3]
        app.query_one("ExpertHeatmap").focus()
        await pilot.press("left", "left")
        lines = _lines(app)
        want = [f"{steps[3]['aux'][f'moe/L0/E{j}'] * 4:.1f}" for j in range(4)]
        assert lines[1].split()[1:] == want and "step 4 (4/6" in lines[3]
        await pilot.press("home")
        assert "step 1 (1/6" in _lines(app)[3]
        # new steps arrive while scrubbed: the view stays put until end
        app.store.ingest([{**steps[-1], "step": 7}])
        app.refresh_panel()
        assert "step 1 (1/7" in _lines(app)[3]
        await pilot.press("end")
        assert "step 7 (live)" in _lines(app)[3]


async def test_thresholds_count_dead_and_hot_experts():
    aux = [e for e in _events() if e["type"] == "step"][2]["aux"]  # step 3
    rel = [aux[f"moe/L{i}/E{j}"] * 4 for i in range(2) for j in range(4)]
    app = HeatmapHost({"dead": 0.5, "hot": 1.6})
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.query_one("ExpertHeatmap").focus()
        await pilot.press("home", "right", "right")
        status = _lines(app)[3]
        assert f"dead {sum(r <= 0.5 for r in rel)}" in status
        assert f"hot {sum(r >= 1.6 for r in rel)}" in status
        assert sum(r <= 0.5 for r in rel) and sum(r >= 1.6 for r in rel)  # the case is not empty


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_heatmap_snapshot(snap_compare, size):
    async def scrub(pilot):
        await pilot.pause()
        pilot.app.query_one("ExpertHeatmap").focus()
        await pilot.press("left")
        await pilot.pause()

    app = HeatmapHost({"dead": 0.5, "hot": 1.6})
    assert snap_compare(app, terminal_size=size, run_before=scrub)
