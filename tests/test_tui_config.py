"""Config pane, driven by keys: invalid edit shows the reason, valid edit shows in the diff,
save-as survives a restart, overwrite asks first."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from nanochat_tui.tui.app import NanochatApp

SIZE = (100, 30)
pytestmark = pytest.mark.anyio


async def test_invalid_edit_shows_reason_beside_field(screen_text, type_into) -> None:
    app = NanochatApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await type_into(pilot, "#f-model--depth", "0")
        row = app.query_one("#f-model--depth").parent
        text = screen_text(app)
        assert "✗" in text and "greater than or equal to 1" in text
        assert row.has_class("-error")
        assert app.state.config.model.depth == 2  # not applied
        assert "Overrides vs prefab (0)" in text


async def test_valid_edit_updates_state_and_diff(screen_text, type_into) -> None:
    app = NanochatApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await type_into(pilot, "#f-model--depth", "4")
        assert app.state.config.model.depth == 4
        assert app.state.overrides == {"model.depth": 4}
        text = screen_text(app)
        assert "Overrides vs prefab (1)" in text
        assert "model.depth: 2 → 4" in text
        assert "tiny +1" in text  # status bar


async def test_save_as_then_restart_finds_prefab(screen_text, type_into) -> None:
    app = NanochatApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await type_into(pilot, "#f-model--depth", "3")
        await pilot.press("escape", "ctrl+s")
        await pilot.pause()
        await type_into(pilot, "#save-name", "mine")
        await pilot.press("enter")
        await pilot.pause()
        assert app.state.prefab_name == "mine"
        await pilot.press("escape", "q")
    # a new app with the same NANOCHAT_TUI_HOME
    app2 = NanochatApp()
    async with app2.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app2.state.prefab_name == "mine"
        assert app2.state.config.model.depth == 3
        assert app2.query_one("#f-model--depth", Input).value == "3"
        assert "mine" in screen_text(app2)
        from nanochat_tui.config import list_prefabs

        assert "mine" in list_prefabs()


async def test_save_as_existing_name_asks_before_overwrite(type_into) -> None:
    from nanochat_tui.config import load_prefab, save_prefab
    from nanochat_tui.tui.screens.confirm import ConfirmScreen

    save_prefab(load_prefab("tiny"), "taken")
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        # walk the category list (focused at start) down to Training; the fields scroll to it
        for _ in range(6):
            if app.query_one("#categories").highlighted == 3:
                break
            await pilot.press("down")
        await pilot.pause()
        await type_into(pilot, "#f-train--seed", "7")
        await pilot.press("escape", "ctrl+s")
        await pilot.pause()
        await type_into(pilot, "#save-name", "taken")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert load_prefab("taken").train.seed == 42  # untouched
        await pilot.press("ctrl+s")
        await pilot.pause()
        await type_into(pilot, "#save-name", "taken")
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert load_prefab("taken").train.seed == 7


async def test_prefab_switch_with_overrides_confirms(type_into) -> None:
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await type_into(pilot, "#f-model--depth", "3")
        await pilot.press("escape", "ctrl+o")
        await pilot.pause()
        await pilot.press("up", "enter")  # the prefab above tiny in the list
        await pilot.pause()
        from nanochat_tui.tui.screens.confirm import ConfirmScreen

        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await pilot.pause()
        assert app.state.prefab_name != "tiny"
        assert app.state.overrides == {}


def test_estimates_show_mfu_assumption() -> None:
    from nanochat_tui.config import load_prefab
    from nanochat_tui.tui.screens.config import mfu_note

    assert "assumed" in mfu_note(load_prefab("tiny")).plain
