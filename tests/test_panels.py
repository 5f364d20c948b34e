"""MetricStore decimation/memory, thresholds, and coalesced panel redraws (synthetic events)."""

from __future__ import annotations

import math
import random

import pytest

from nanochat_tui.panels.base import threshold_style
from nanochat_tui.panels.store import MetricStore, Series


def _steps(n: int, start: int = 1):
    rng = random.Random(0)
    for step in range(start, start + n):
        yield {
            "type": "step",
            "time": 1000.0 + step,
            "step": step,
            "loss": 10 / math.sqrt(step) + rng.random() * 0.1,
            "tokens_per_s": 1000.0,
            "loss_components": {"ce": 1.0, "aux": 0.5},
        }


def test_decimation_keeps_two_points_per_column_and_extremes():
    s = Series(max_buckets=256, tail=128)
    rng = random.Random(1)
    ys = [rng.gauss(0, 1) for _ in range(100_000)]
    ys[31_337] = 50.0  # a spike must survive
    ys[77_001] = -60.0
    for i, y in enumerate(ys):
        s.add(i, y)
    for columns in (40, 80, 160):
        xs, out = s.points(columns)
        assert len(out) <= 2 * columns + 1
        assert max(out) == 50.0 and min(out) == -60.0
        assert xs == sorted(xs)
    assert s.minimum() == -60.0 and s.maximum() == 50.0


def test_memory_flat_over_a_million_steps():
    s = Series(max_buckets=512, tail=256)
    for i in range(1_000_000):
        s.add(i, float(i % 997))
    assert s.stored <= 512 + 256
    xs, _ = s.points(100)
    assert xs[0] == 0 and xs[-1] >= 999_000


def test_short_series_returns_raw_points_and_exact_ema():
    s = Series()
    for i in range(10):
        s.add(i, float(i))
    assert s.points(80) == (list(range(10)), [float(i) for i in range(10)])
    _, ema = s.smoothed(0.5, 80)
    assert ema[0] == 0.0 and 0 < ema[-1] < 9  # debiased, lagging
    s.add(10, float("nan"))
    assert s.count == 10 and math.isnan(s.last[1])


def test_store_ingest_builds_series_components_and_counts():
    store = MetricStore()
    store.ingest([{"type": "run_start", "time": 1.0, "num_iterations": 100}])
    store.ingest(_steps(50))
    store.ingest(
        [
            {"type": "eval", "time": 2.0, "step": 50, "val_bpb": 1.5},
            {"type": "patch", "step": 50, "changes": {"optim.lr_multiplier": 0.5}, "ok": True},
            {"type": "run_end", "step": 50, "status": "stopped"},
        ]
    )
    assert store.step == 50 and store.first_step == 1 and store.num_iterations == 100
    assert store.get("loss").count == 50
    assert "loss_components.aux" in store.metric_names()
    assert store.latest("val_bpb") == 1.5
    assert store.patches[-1]["ok"] is True
    assert store.status == "stopped"
    assert store.version == 3


def test_thresholds():
    assert threshold_style(5.0, {"above": 4.0}) == "bold red"
    assert threshold_style(3.0, {"above": 4.0, "warn_above": 2.5}) == "bold yellow"
    assert threshold_style(1.0, {"above": 4.0}) == "bold green"
    assert threshold_style(None, {}) == "dim"


# ---------------------------------------------------------------- coalescing in a real (headless) app


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_thousand_events_between_refreshes_cost_one_redraw():
    from textual.app import App

    from nanochat_tui.config.schema import PanelSpec, ScreenSpec
    from nanochat_tui.tui.widgets.panel_grid import PanelGrid

    store = MetricStore()

    class Host(App):
        def compose(self):
            yield PanelGrid(store)

    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        grid = app.query_one(PanelGrid)
        spec = ScreenSpec(
            name="t",
            panels=[PanelSpec(type="progress"), PanelSpec(type="loss"), PanelSpec(type="timers")],
        )
        await grid.show_screen(spec)
        await pilot.pause()
        assert grid.tick() is True  # first draw
        before = [p.redraw_count for p in grid.panels]
        for event in _steps(1000):
            store.ingest([event])  # 1000 separate arrivals
        assert grid.tick() is True
        assert grid.tick() is False  # nothing new: no redraw
        after = [p.redraw_count for p in grid.panels]
        assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]
        assert grid.redraws == 2
        await pilot.pause()
        loss = grid.panels[1]
        assert "loss" in str(loss.query_one(".headline").render())


@pytest.mark.anyio
async def test_live_pane_rebuilds_from_event_log(tmp_path):
    import json

    from textual.app import App

    from nanochat_tui.tui.panel_spec import parse_panel_text
    from nanochat_tui.tui.screens.live import LivePane

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with (run_dir / "events.jsonl").open("w") as fh:
        fh.write(json.dumps({"type": "run_start", "time": 1.0, "num_iterations": 300}) + "\n")
        for e in _steps(300):
            fh.write(json.dumps(e) + "\n")

    class Host(App):
        def compose(self):
            yield LivePane()

    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(LivePane)
        pane.show_run_dir(run_dir)
        for _ in range(100):
            await pilot.pause(0.05)
            if pane.store.step == 300:
                break
        assert pane.store.first_step == 1 and pane.store.get("loss").count == 300
        await pilot.press("right_square_bracket")
        assert pane.screen_index == 1
        await pilot.press("minus")
        assert pane.current.refresh_ms == 2000
        spec = parse_panel_text("loss source=loss above=4 smoothing=0.9")
        assert spec.thresholds == {"above": 4.0} and spec.options == {"smoothing": 0.9}
        with pytest.raises(Exception, match="unknown panel type"):
            parse_panel_text("nope")


@pytest.mark.anyio
async def test_screen_switch_keeps_panels_mounted_and_skips_hidden_redraws(tmp_path):
    """`]`/`[` toggle which grid is visible: no panel is remounted, hidden grids aren't drawn,
    and an unchanged chart is not rebuilt (the plotext build is cached)."""
    import json

    from textual.app import App

    from nanochat_tui.panels.base import Panel
    from nanochat_tui.panels.chart import ChartView, chart_builder
    from nanochat_tui.tui.screens.live import LivePane

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with (run_dir / "events.jsonl").open("w") as fh:
        fh.write(json.dumps({"type": "run_start", "time": 1.0, "num_iterations": 300}) + "\n")
        for e in _steps(300):
            fh.write(json.dumps(e) + "\n")

    mounts: list[Panel] = []
    original = Panel.on_mount if hasattr(Panel, "on_mount") else None

    def counting_mount(self) -> None:
        mounts.append(self)
        if original is not None:
            original(self)

    class Host(App):
        def compose(self):
            yield LivePane()

    Panel.on_mount = counting_mount  # type: ignore[method-assign]
    try:
        app = Host()
        async with app.run_test(size=(120, 40)) as pilot:
            pane = app.query_one(LivePane)
            pane.show_run_dir(run_dir)
            for _ in range(100):
                await pilot.pause(0.05)
                if pane.store.step == 300:
                    break
            pane._tick(force=True)
            await pilot.pause()
            grids = pane.grids
            assert len(grids) == 2
            every_panel = [p for g in grids for p in g.panels]
            assert len(mounts) == len(every_panel) == 6  # all screens mounted once, up front
            hidden = grids[1]
            assert hidden.visible is False and hidden.redraws == 0  # hidden: never drawn
            first = {id(p) for p in every_panel}

            for key in ["right_square_bracket", "left_square_bracket"] * 3:
                await pilot.press(key)
                await pilot.pause()
            assert pane.screen_index == 0
            assert {id(p) for g in pane.grids for p in g.panels} == first  # same widgets
            assert len(mounts) == 6  # nothing remounted
            assert hidden.redraws == 1  # drawn once when first shown, not on every switch

            for _ in range(200):  # charts are built in the builder thread
                if chart_builder().idle():
                    break
                await pilot.pause(0.02)
            await pilot.pause()
            charts = pane.grid.query(ChartView)
            requests = [c.requests for c in charts]
            shown = [c.shown for c in charts]
            assert all(s >= 1 for s in shown)
            pane._tick(force=True)  # same data, same size: cache hit, no new build
            await pilot.pause()
            assert [c.requests for c in charts] == requests
            assert "┤" in str(charts[0].render())  # a real plotext chart (y axis ticks)
    finally:
        if original is None:
            del Panel.on_mount
        else:
            Panel.on_mount = original  # type: ignore[method-assign]


@pytest.mark.anyio
async def test_progress_bar_follows_a_patched_num_iterations():
    from textual.app import App

    from nanochat_tui.config.schema import PanelSpec, ScreenSpec
    from nanochat_tui.tui.widgets.panel_grid import PanelGrid

    store = MetricStore()

    class Host(App):
        def compose(self):
            yield PanelGrid(store)

    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        grid = app.query_one(PanelGrid)
        await grid.show_screen(ScreenSpec(name="t", panels=[PanelSpec(type="progress")]))
        await pilot.pause()
        store.ingest([{"type": "run_start", "time": 1.0, "num_iterations": 100}])
        store.ingest([{"type": "step", "time": 2.0, "step": 50, "loss": 3.0}])
        grid.tick()
        body = str(grid.panels[0].query_one("#progress-body").render())
        assert "step 50/100" in body and "50.0%" in body
        # a refused patch changes nothing; an applied one moves the bar and the total
        store.ingest([{"type": "patch", "step": 50, "ok": False, "num_iterations": 999}])
        store.ingest([{"type": "patch", "step": 50, "ok": True, "num_iterations": 200}])
        grid.tick()
        body = str(grid.panels[0].query_one("#progress-body").render())
        assert "step 50/200" in body and "25.0%" in body
        assert store.num_iterations == 200
