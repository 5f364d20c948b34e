"""The Textual work-arounds in ``tui/textual_fixes.py`` against the real widgets."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Select, Static
from textual.widgets._select import SelectCurrent

from nanochat_tui.tui import textual_fixes


@pytest.mark.anyio
async def test_a_select_label_update_before_the_label_is_mounted_is_replayed() -> None:
    """Textual#6581: ``SelectCurrent.update`` while its ``#label`` is not mounted raised
    NoMatches and crashed the app; now it waits for the label, and the newest update wins."""
    textual_fixes.apply()

    class Demo(App):
        def compose(self) -> ComposeResult:
            yield Select([("alpha", 1), ("beta", 2), ("gamma", 3)], value=1, allow_blank=False)

    app = Demo()
    async with app.run_test() as pilot:
        current = app.query_one(SelectCurrent)
        await current.query_one("#label").remove()
        current.update("beta")  # no label: must not raise
        current.update("gamma")  # a newer update supersedes the pending one
        await current.mount(Static(id="label"))
        for _ in range(5):
            await pilot.pause()
        assert str(current.query_one("#label", Static).render()) == "gamma"


@pytest.mark.anyio
async def test_a_select_change_before_its_overlay_is_mounted_is_replayed() -> None:
    """``Select`` fills its overlay from the value watcher and ``set_options`` without checking
    that the overlay is mounted (CI crashed with NoMatches 'SelectOverlay'); now the newest
    options and value are applied once it is, and ``Changed`` is posted then."""
    from textual.widgets._select import SelectOverlay

    textual_fixes.apply()
    changes: list[object] = []

    class Demo(App):
        def compose(self) -> ComposeResult:
            yield Select([("alpha", 1), ("beta", 2)], value=1, allow_blank=False)

        def on_select_changed(self, event: Select.Changed) -> None:
            changes.append(event.value)

    app = Demo()
    async with app.run_test() as pilot:
        await pilot.pause()
        select = app.query_one(Select)
        changes.clear()
        await select.query_one(SelectOverlay).remove()
        select.set_options([("x", 10), ("y", 20), ("z", 30)])  # no overlay: must not raise
        select.value = 30  # a newer value supersedes the pending one
        await select.mount(SelectOverlay())
        for _ in range(5):
            await pilot.pause()
        overlay = select.query_one(SelectOverlay)
        assert overlay.option_count == 3
        assert overlay.highlighted == 2
        assert str(select.query_one(SelectCurrent).query_one("#label", Static).render()) == "z"
        assert changes == [30]


@pytest.mark.anyio
async def test_a_timer_behind_schedule_ticks_at_the_next_slot_not_the_one_after() -> None:
    """Textual's ``Timer._run`` skipped one slot too many when behind schedule: a timer resumed
    after a pause ticked at once, then slept 1-2 intervals instead of 0-1 (the 60 Hz screen
    update timer is paused while idle, so a change soon after a frame waited up to 33 ms)."""
    import asyncio
    import time

    textual_fixes.apply()
    ticks: list[float] = []

    class Demo(App):
        def on_mount(self) -> None:
            self.timer = self.set_interval(every, lambda: ticks.append(time.monotonic()))

    every = 0.3  # fixed: the next tick comes 0.4 x every after the late one; unfixed: 1.4 x every
    app = Demo()
    async with app.run_test():
        while not ticks:
            await asyncio.sleep(0.005)
        app.timer.pause()  # right after the first slot (start + 1 x every)
        await asyncio.sleep(2.6 * every - (time.monotonic() - ticks[0]))
        app.timer.resume()  # at start + 3.6 x every: ticks at once, then at the slot start + 4 x
        while len(ticks) < 3:
            await asyncio.sleep(0.005)
    late_tick, next_tick = ticks[1], ticks[2]
    gap = next_tick - late_tick
    assert gap < every, f"next tick {1000 * gap:.0f} ms later (fixed: ~{400 * every:.0f} ms)"
