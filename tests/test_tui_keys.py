"""Keys: help groups every pane's keys, the header hint follows the keymap, every binding is in
the palette, single keys never fire in a text field, every focusable widget shows its focus."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from nanochat_tui import paths
from nanochat_tui.tui import keymap as km
from nanochat_tui.tui.app import NanochatApp
from nanochat_tui.tui.commands import collect_commands

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_help_lists_every_panes_keys_grouped_even_unopened(screen_text) -> None:
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 80)) as pilot:  # tall enough to show the Live group
        await pilot.pause()
        rows = app.key_rows()
        scopes = [spec.scope for spec, _key in rows]
        for title in ("global", "Config", "Runs", "Live", "Compare", "Chat"):
            assert title in scopes, title
        ids = {spec.id for spec, _key in rows}
        assert {"live.checkpoint", "runs.resume", "compare.export", "app.events"} <= ids
        # grouped: each scope's rows are contiguous
        seen: list[str] = []
        for scope in scopes:
            if not seen or seen[-1] != scope:
                assert scope not in seen, f"{scope} split in two groups"
                seen.append(scope)
        await pilot.press("question_mark")
        await pilot.pause()
        text = screen_text(app)
        assert "Live" in text and "live.checkpoint" in text


async def test_header_hint_follows_a_remapped_key(screen_text) -> None:
    (paths.config_dir() / "keymap.yaml").write_text("app.help: f1\napp.palette: ctrl+k\n")
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause()
        assert app.header_hint() == "f1 help ^k cmds"
        assert "f1 help ^k cmds" in screen_text(app).splitlines()[0]


@pytest.mark.parametrize(
    "pane", ["runs", "live", "compare", "chat", "config", "checkpoints", "soul"]
)
async def test_every_binding_of_a_pane_is_reachable_from_the_palette(pane) -> None:
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await app.action_switch_pane(pane)
        await pilot.pause()
        widget = app.active_pane_widget()
        commands = collect_commands(app)
        names = {getattr(cb, "__name__", "") for _t, _h, cb in commands}
        helps = " ".join(h for _t, h, _cb in commands)
        for spec in km.widget_keys(widget, pane):
            action = spec.action.split("(", 1)[0]
            key = km.display_key(spec.key)
            assert f"action_{action}" in names or f"key {key}" in helps, spec.id


async def test_single_keys_never_fire_in_a_text_field() -> None:
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        await pilot.press("n")  # the new-run dialog: a text field
        await pilot.pause()
        box = app.screen.query_one(Input)
        await pilot.press(*"q5l?7")
        await pilot.pause()
        assert app.is_running and box.value == "q5l?7" and app.active_pane == "runs"
        assert app.event_log is None  # 'l' typed, not the event-log key


def _look(widget) -> tuple:
    """The widget's own look, and that of a ``focus-mark`` child that shows the widget's focus
    (the Live pane marks focus on its header: a style on the pane itself that its children
    inherit would re-render every panel on each focus change)."""
    looks = []
    for node in [widget, *widget.query_children(".focus-mark")]:
        styles = node.styles
        looks.append((
            str(styles.border),
            str(styles.background),
            str(styles.background_tint),
            str(styles.color),
            str(styles.text_style),
        ))  # fmt: skip
    return tuple(looks)


@pytest.mark.parametrize("pane", ["runs", "live", "compare", "chat", "soul"])
async def test_every_focusable_widget_shows_its_focus(pane) -> None:
    from nanochat_tui.tui.screens.chat import ChatPane

    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await app.action_switch_pane(pane)
        await pilot.pause()
        root = app.active_pane_widget()
        if isinstance(root, ChatPane):
            for box in root.query(Input):
                box.disabled = False  # no checkpoint: enable the prompt to check its look
        await pilot.pause()
        chain = [w for w in app.screen.focus_chain if root in w.ancestors_with_self]
        assert chain, "the pane has no focusable widget"
        for widget in chain:
            app.set_focus(None)
            await pilot.pause()
            before = _look(widget)
            widget.focus()
            await pilot.pause()
            assert _look(widget) != before, f"{widget!r} looks the same focused"
