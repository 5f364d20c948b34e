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
