"""Runs pane dialogs without training: a taken run name keeps the dialog and what was typed."""

from __future__ import annotations

import pytest

from nanochat_tui import paths
from nanochat_tui.tui.app import NanochatApp
from nanochat_tui.tui.screens.prompt import PromptModal


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_new_run_name_taken_keeps_dialog_and_typed_name():
    taken = paths.runs_dir() / "taken"
    taken.mkdir(parents=True)
    (taken / "events.jsonl").write_text("")
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause()
        await pilot.press(*"taken", "enter")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, PromptModal)
        assert modal.query_one("#prompt-input").value == "taken"
        assert "a run named 'taken' exists" in str(modal.query_one("#prompt-error").render())
        assert app.state.run is None
