"""Compare pane + orchestrator/compare.py: overlay runs from local dirs, config diff, export."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
import yaml

from nanochat_tui import paths
from nanochat_tui.orchestrator.compare import config_diff, export, load_series


@pytest.fixture
def anyio_backend():
    return "asyncio"


def make_run(parent: Path, name: str, *, lr: float, depth: int, steps: int, t0: float) -> Path:
    """A run dir with a config and a loss curve (loss = 4 - step*lr), evals every 5 steps."""
    run_dir = parent / name
    run_dir.mkdir(parents=True)
    config = {"name": "tiny", "run": {"name": name}, "model": {"depth": depth}, "optim": {"lr": lr}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "run.json").write_text(json.dumps({"name": name, "status": "finished"}))
    with (run_dir / "events.jsonl").open("w") as fh:
        fh.write(json.dumps({"type": "run_start", "time": t0}) + "\n")
        for step in range(1, steps + 1):
            event = {
                "type": "step", "time": t0 + 2 * step, "step": step, "tokens": 1024 * step,
                "loss": 4 - step * lr, "loss_components": {"ce": 3 - step * lr},
            }  # fmt: skip
            fh.write(json.dumps(event) + "\n")
            if step % 5 == 0:
                fh.write(
                    json.dumps(
                        {
                            "type": "eval",
                            "time": t0 + 2 * step + 1,
                            "step": step,
                            "val_bpb": 2 - step * lr,
                        }
                    )
                    + "\n"
                )
        fh.write(
            json.dumps({"type": "run_end", "time": t0 + 999, "step": steps, "status": "finished"})
            + "\n"
        )
    return run_dir


def test_series_axes_and_config_diff(tmp_path):
    a = make_run(tmp_path, "a", lr=0.1, depth=2, steps=10, t0=100.0)
    b = make_run(tmp_path, "b", lr=0.05, depth=2, steps=10, t0=500.0)
    sa = load_series(a)
    assert sa.metrics() == ["loss", "loss_components.ce", "val_bpb"]
    xs, ys = sa.xy("loss", "step")
    assert xs == list(range(1, 11)) and ys == pytest.approx([4 - s * 0.1 for s in range(1, 11)])
    assert sa.xy("loss", "tokens")[0][:2] == [1024.0, 2048.0]
    assert sa.xy("loss", "time")[0][:2] == [2.0, 4.0]  # seconds since run_start
    assert sa.xy("val_bpb", "step") == ([5.0, 10.0], pytest.approx([1.5, 1.0]))
    assert config_diff([a, b]) == [("optim.lr", [0.1, 0.05])]
    assert config_diff([a, a]) == []


def test_export_csv_and_json_match_the_events(tmp_path):
    a = make_run(tmp_path, "a", lr=0.1, depth=2, steps=10, t0=100.0)
    b = make_run(tmp_path, "b", lr=0.05, depth=3, steps=6, t0=500.0)
    runs = [load_series(a), load_series(b)]
    out = export(runs, "loss", "tokens", tmp_path / "out" / "loss.csv")
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["run", "tokens", "loss"] and len(rows) == 1 + 10 + 6
    expected = [
        (e["step"] * 1024, e["loss"])
        for e in map(json.loads, (b / "events.jsonl").read_text().splitlines())
        if e["type"] == "step"
    ]
    assert [(int(r[1]), float(r[2])) for r in rows if r[0] == "b"] == expected
    data = json.loads(export(runs, "val_bpb", "step", tmp_path / "v.json").read_text())
    assert data["metric"] == "val_bpb" and [r["name"] for r in data["runs"]] == ["a", "b"]
    assert data["runs"][0]["x"] == [5.0, 10.0]


async def _loaded(pilot, pane, n: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (len(pane.runs) == n and pane.loads):
        await pilot.pause(0.05)
    assert len(pane.runs) == n, (pane.picked, list(pane.series))


@pytest.mark.anyio
async def test_compare_pane_pick_overlay_switch_axis_metric_and_export():
    from nanochat_tui.panels.chart import ChartView
    from nanochat_tui.tui.app import NanochatApp
    from nanochat_tui.tui.screens.compare import ComparePane
    from nanochat_tui.tui.screens.prompt import PromptModal

    runs_dir = paths.runs_dir()
    a = make_run(runs_dir, "lr-high", lr=0.1, depth=2, steps=10, t0=100.0)
    make_run(runs_dir, "lr-low", lr=0.05, depth=4, steps=10, t0=500.0)
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("8")
        await pilot.pause()
        pane = app.query_one(ComparePane)
        listing = pane.query_one("#compare-runs")
        deadline = time.monotonic() + 10
        while listing.option_count < 2 and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert app.focused is listing
        await pilot.press("space", "down", "space")  # pick both
        await _loaded(pilot, pane, 2)
        chart = pane.query_one(ChartView)
        labels = [label for _x, _y, label in chart._lines]
        assert sorted(labels) == ["lr-high", "lr-low"]
        diff = str(pane.query_one("#compare-diff").render())
        assert "model.depth: 2 │ 4" in diff or "model.depth: 4 │ 2" in diff
        await pilot.press("x")
        assert pane.axis == "tokens" and chart._xlabel == "tokens seen"
        await pilot.press("m")  # the usual metrics first, then the rest
        assert pane.metric == "val_bpb"
        await pilot.press("m")
        assert pane.metric == "loss_components.ce"
        await pilot.press("M")
        assert pane.metric == "val_bpb"
        assert all(len(xs) == 2 for xs, _y, _l in chart._lines)
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, PromptModal)
        target = paths.data_dir() / "exports" / "compare-val_bpb-tokens.csv"
        assert app.screen.query_one("#prompt-input").value == str(target)
        await pilot.press("enter")
        await pilot.pause()
        rows = list(csv.reader(target.open()))
        assert rows[0] == ["run", "tokens", "val_bpb"] and len(rows) == 5
        titles = [t for t, _h, _cb in pane.palette_commands()]
        assert "Compare: plot loss" in titles and "Compare: x axis wall time (s)" in titles
        await pilot.press("space")  # unpick one: the diff goes away
        await _loaded(pilot, pane, 1)
        assert "pick two or more" in str(pane.query_one("#compare-diff").render())
    assert a.is_dir()
