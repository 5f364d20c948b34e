"""Snapshots of the Compare pane (two fabricated runs picked) at 80×24 and 160×48."""

from __future__ import annotations

import os
import time

import pytest

from nanochat_tui import paths
from nanochat_tui.tui.app import NanochatApp
from test_tui_compare import make_run

SIZES = [(80, 24), (160, 48)]


async def _picked_and_drawn(pilot) -> None:
    from nanochat_tui.panels.chart import chart_builder

    await pilot.press("8")
    pane = pilot.app.query_one("ComparePane")
    listing = pane.query_one("#compare-runs")
    deadline = time.monotonic() + 10
    while listing.option_count < 2 and time.monotonic() < deadline:
        await pilot.pause(0.05)
    await pilot.press("space", "down", "space")
    while len(pane.runs) < 2 and time.monotonic() < deadline:
        await pilot.pause(0.05)
    for _ in range(3):  # charts are built off the event loop
        while not chart_builder().idle() and time.monotonic() < deadline:
            await pilot.pause(0.05)
        await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compare_pane_snapshot(snap_compare, size):
    runs = paths.runs_dir()
    for i, (name, lr, depth) in enumerate([("lr-high", 0.1, 2), ("lr-low", 0.05, 4)]):
        run_dir = make_run(runs, name, lr=lr, depth=depth, steps=30, t0=100.0 + 400 * i)
        os.utime(run_dir, (1_700_000_000 + i, 1_700_000_000 + i))  # a fixed list order
    assert snap_compare(
        NanochatApp(prefab="tiny"), terminal_size=size, run_before=_picked_and_drawn
    )
