"""Full collections at quiet moments: the policy alone, and installed by the running app."""

from __future__ import annotations

import gc
import time

import pytest

from helpers import pilot_wait_for
from nanochat_tui.tui.idle_gc import NO_AUTOMATIC_FULL, IdleCollector


def test_thresholds_are_put_back_and_full_collections_wait_for_a_quiet_moment() -> None:
    before = gc.get_threshold()
    collector = IdleCollector(quiet_s=0.05, every_s=0.05, at_most_s=0.3)
    collector.install()
    try:
        assert gc.get_threshold() == (before[0], before[1], NO_AUTOMATIC_FULL)
        assert not collector.tick()  # nothing due yet
        time.sleep(0.06)
        collector.input_seen()
        assert not collector.tick()  # due, but a key just came
        time.sleep(0.06)
        assert collector.tick() and collector.collections == 1  # due and quiet
        deadline = time.monotonic() + 0.31
        while time.monotonic() < deadline:  # the user never stops typing...
            collector.input_seen()
            if collector.tick():
                break
            time.sleep(0.01)
        assert collector.collections == 2  # ...the collection still runs by at_most_s
    finally:
        collector.uninstall()
    assert gc.get_threshold() == before


@pytest.mark.anyio
async def test_the_app_defers_full_collections_while_it_runs_and_sees_keys() -> None:
    from nanochat_tui.tui.app import NanochatApp

    before = gc.get_threshold()
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot_wait_for(pilot, lambda: app.started, what="the app to start")
        assert gc.get_threshold()[2] == NO_AUTOMATIC_FULL
        seen = app.idle_gc._last_input
        await pilot.press("question_mark")
        assert app.idle_gc._last_input > seen
    assert gc.get_threshold() == before
