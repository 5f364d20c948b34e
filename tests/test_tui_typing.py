"""Typing never does what the user did not ask for (issue 25.15): a sentence typed on a pane lands
in its text field and nothing else happens; closing a modal leaves focus where it was; a key typed
right after q is dropped (it crashed the app); quitting with unsaved SOUL edits asks first."""

from __future__ import annotations

import os

import pytest
from textual import events
from textual.widgets import Input, TextArea

from nanochat_tui import paths
from nanochat_tui.tui.app import NanochatApp
from nanochat_tui.tui.screens.confirm import ConfirmScreen

pytestmark = pytest.mark.anyio
SIZE = (120, 40)
# every global key (q l ? 5) and many pane keys (d x e a c n p s r m t u) are in it
SENTENCE = "hello quick brown fox, delete x? 5 quit"
KEY_NAMES = {" ": "space", ",": "comma", "?": "question_mark"}


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def started(pilot) -> None:
    while not pilot.app.started:
        await pilot.pause(0.02)
    await pilot.pause()


def is_text_field(widget) -> bool:
    return isinstance(widget, (Input, TextArea))


def typed(field) -> str:
    return field.value if isinstance(field, Input) else field.text


def files_under(root) -> dict[str, float]:
    """Every file under ``root`` with its mtime: SOUL versions, runs, prefabs, settings."""
    found = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if not name.endswith(".log"):  # the app's own log grows as it runs
                found[path] = os.path.getmtime(path)
    return found


def observed(app) -> dict:
    """What typing must not change: pane, modal, exit, event log, shared state, files on disk."""
    state = app.state
    return {
        "pane": app.active_pane,
        "screens": len(app.screen_stack),
        "running": app.is_running,
        "event_log": app.event_log is not None and app.event_log.display,
        "prefab": state.prefab_name,
        "overrides": dict(state.overrides),
        "checkpoint": state.checkpoint,
        "run": state.run,
        "files": files_under(paths.home_override() or paths.config_dir()),
    }


async def type_sentence(pilot) -> None:
    await pilot.press(*[KEY_NAMES.get(c, c) for c in SENTENCE])
    await pilot.pause()


async def leave_field(pilot) -> None:
    """esc, as a user leaves a field before pressing the next pane key."""
    if is_text_field(pilot.app.focused):
        await pilot.press("escape")
        await pilot.pause()


async def test_a_sentence_typed_on_any_pane_lands_in_its_field_and_does_nothing_else() -> None:
    """Every registered pane (plugins' too): a pane whose point is typing (Chat, SOUL, Auth) has
    its field focused on entry; every other text field, once clicked, takes the sentence whole.
    Either way no pane switch, modal, quit, event log, config change or file write follows."""
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        focused_on_entry, clicked = [], []
        for entry in app.pane_entries:
            await leave_field(pilot)
            await pilot.press(entry.key)
            await pilot.pause()
            await pilot.pause()
            assert app.active_pane == entry.name
            pane = app.active_pane_widget()
            fields = [
                w
                for w in pane.query("Input, TextArea")
                if not w.disabled and w.display and w.region.area > 0
            ]
            if is_text_field(app.focused):
                focused_on_entry.append(entry.name)
            elif fields:  # a field reached by a key or a click (Config's values, Designer's edit)
                await pilot.click(fields[0])
                await pilot.pause()
                assert app.focused is fields[0], entry.name
                clicked.append(entry.name)
            else:  # a table or list pane: its single keys are its commands (see help)
                continue
            field = app.focused
            before_text = typed(field)
            before = observed(app)
            await type_sentence(pilot)
            assert app.focused is field, entry.name
            assert SENTENCE in typed(field) and len(typed(field)) == len(before_text) + len(
                SENTENCE
            ), entry.name
            assert observed(app) == before, entry.name
        assert {"chat", "soul", "auth"} <= set(focused_on_entry)
        assert {"config", "designer"} <= set(clicked)  # designer: a plugin pane


async def test_chat_without_a_checkpoint_keeps_what_was_typed() -> None:
    """No checkpoint: the prompt box still has the focus; Enter sends nothing and keeps the text."""
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("3")
        await pilot.pause()
        box = app.screen.query_one("#chat-input", Input)
        assert app.focused is box and not box.disabled
        await type_sentence(pilot)
        await pilot.press("enter")
        await pilot.pause()
        assert box.value == SENTENCE and app.active_pane == "chat" and app.is_running
        assert any("Load a checkpoint first" in n.message for n in app._notifications)


async def test_closing_help_leaves_focus_where_it_was() -> None:
    """Chat, esc (leave the prompt), ? then esc: nothing is focused again, so 5 switches to Live
    instead of landing in the temperature field (Textual's auto-focus picked it)."""
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("3")
        await pilot.pause()
        await pilot.press("escape")
        assert app.focused is None
        await pilot.press("question_mark")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert app.focused is None
        temperature = app.screen.query_one("#temperature", Input).value
        await pilot.press("5")
        await pilot.pause()
        assert app.active_pane == "live"
        assert app.screen.query_one("#temperature", Input).value == temperature


async def test_escape_leaves_the_soul_editor_for_the_tools_table() -> None:
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("7")
        await pilot.pause()
        await pilot.pause()
        assert isinstance(app.focused, TextArea)
        await pilot.press("escape")
        await pilot.pause()
        assert app.focused is app.screen.query_one("#soul-tools")
        await pilot.press("1")  # pane keys work again
        await pilot.pause()
        assert app.active_pane == "config"


@pytest.mark.parametrize("pane_key", ["5", "3", "l"])
async def test_a_key_typed_right_after_q_is_dropped(pane_key) -> None:
    """q then a pane key, as fast as a terminal delivers them: the second key arrived while the
    app was closing, mounted a pane in the unmounted switcher and crashed (MountError)."""
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        app.set_focus(None)  # the keys reach the app's bindings (e.g. after esc on Chat)
        await pilot.pause()
        app.post_message(events.Key("q", "q"))
        app.post_message(events.Key(pane_key, pane_key))
        await pilot.pause(0.3)
    assert app.return_code == 0 and app.crash_path is None


async def test_quit_with_unsaved_soul_edits_asks_first() -> None:
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("q")  # nothing unsaved yet: SOUL is not even open
        await pilot.pause()
    assert app.return_code == 0

    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("7")
        await pilot.pause()
        await pilot.press(*"more", "escape")
        await pilot.pause()
        for answer in ("n", "escape"):
            await pilot.press("q")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmScreen)
            assert "unsaved edits" in app.screen.question
            await pilot.press("q")  # a second q does not stack another question
            await pilot.pause()
            assert len(app.screen_stack) == 2
            await pilot.press(answer)
            await pilot.pause()
            assert app.is_running and len(app.screen_stack) == 1
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
    assert app.return_code == 0 and not app.is_running
