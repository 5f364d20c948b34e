"""Full collections at quiet moments: the policy alone, and installed by the running app."""

from __future__ import annotations

import gc
import time

import pytest

from helpers import pilot_wait_for
from nanochat_tui.tui.idle_gc import NO_AUTOMATIC_FULL, IdleCollector


class HandClock:
    """A clock the test moves by hand, so a busy CI machine cannot change what is 'due'."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_thresholds_are_put_back_and_full_collections_wait_for_a_quiet_moment() -> None:
    before = gc.get_threshold()
    clock = HandClock()
    collector = IdleCollector(quiet_s=1.0, every_s=30.0, at_most_s=120.0, clock=clock)
    full_collections: list[int] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            full_collections.append(1)

    gc.callbacks.append(seen)
    collector.install()
    try:
        assert gc.get_threshold() == (before[0], before[1], NO_AUTOMATIC_FULL)
        clock.now += 29.9
        assert not collector.tick()  # quiet, but not due yet
        clock.now += 0.2
        collector.input_seen()
        clock.now += 0.5
        assert not collector.tick()  # due, but a key came 0.5 s ago
        clock.now += 0.6
        full_before = len(full_collections)
        assert collector.tick() and collector.collections == 1  # due and quiet
        assert len(full_collections) == full_before + 1  # a generation-2 collection really ran
        typed_until = clock.now + 119.5
        while clock.now < typed_until:  # the user never stops typing...
            clock.now += 0.25
            collector.input_seen()
            assert not collector.tick()
        clock.now += 0.5  # ...120 s after the last collection,
        collector.input_seen()
        assert collector.tick() and collector.collections == 2  # ...it runs anyway
    finally:
        collector.uninstall()
        gc.callbacks.remove(seen)
    assert gc.get_threshold() == before


def test_the_real_clock_is_the_default() -> None:
    collector = IdleCollector()
    assert collector.clock is time.monotonic
    assert abs(collector._last_full - time.monotonic()) < 60


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
