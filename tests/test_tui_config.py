"""Config pane, driven by keys: invalid edit shows the reason, valid edit shows in the diff,
save-as survives a restart, overwrite asks first."""

from __future__ import annotations

import sys

import pytest
from textual.widgets import Input

from helpers import pilot_wait_for
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


async def test_picker_marks_origin_and_lists_broken_prefabs(screen_text) -> None:
    """Regression (issue 16): the picker listed broken prefabs unmarked (and one broken file must
    not stop the others from loading)."""
    from textual.widgets import Select

    from nanochat_tui import paths
    from nanochat_tui.config import load_prefab, save_prefab
    from nanochat_tui.tui.screens.config import ConfigPane

    save_prefab(load_prefab("tiny"), "mine")
    (paths.user_prefabs_dir() / "bad.yaml").write_bytes(b"\xff\xfe not utf-8")
    app = NanochatApp(prefab="tiny")
    notes: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.notify = lambda message, **kwargs: notes.append(str(message))
        labels = {v: str(label) for label, v in app.query_one(ConfigPane)._prefab_options()}
        assert labels["tiny"] == "tiny  bundled" and labels["mine"] == "mine  user"
        assert labels["bad"] == "✗ bad  broken"
        app.query_one("#prefab", Select).value = "bad"  # says why, keeps the current prefab
        await pilot.pause()
        assert app.state.prefab_name == "tiny"
        assert any("UTF-16" in note for note in notes), notes


async def test_save_under_a_bundled_name_is_refused_in_the_dialog(screen_text, type_into) -> None:
    from nanochat_tui.config import list_prefabs
    from nanochat_tui.tui.screens.config import SavePrefabScreen

    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        await type_into(pilot, "#save-name", "ten")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, SavePrefabScreen)  # still open, the name kept
        assert app.screen.query_one("#save-name", Input).value == "ten"
        assert "'ten' is a bundled prefab" in screen_text(app)
    assert list_prefabs()["ten"].parent.name == "prefabs"
    assert "config" not in list_prefabs()["ten"].parts[-3:]  # still the bundled file


async def test_every_tab_stop_on_the_config_pane_shows_focus() -> None:
    """Regression (issue 16): the Config pane had an invisible first tab stop (the scrolling
    fields container); every focusable widget must look different when focused."""
    from textual.geometry import Region

    from nanochat_tui.tui.screens.config import ConfigPane

    def looks(widget) -> list[str]:
        return [
            strip.text + repr([seg.style for seg in strip])
            for node in widget.walk_children(with_self=True)
            for strip in node.render_lines(Region(0, 0, node.size.width, node.size.height))
        ]

    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot_wait_for(pilot, lambda: app.started, what="app start")
        await pilot.pause()
        pane = app.query_one(ConfigPane)
        chain = [w for w in app.screen.focus_chain if pane in w.ancestors_with_self]
        assert chain and chain[0].id == "prefab"
        for widget in chain:
            widget.focus()
            await pilot.pause()
            focused = looks(widget)
            app.set_focus(None)
            await pilot.pause()
            assert looks(widget) != focused, f"{widget} shows no focus indicator"


async def test_a_pathological_field_value_shows_an_error_not_a_crash(screen_text) -> None:
    """`ui=[[[…` 2000 deep crashed with RecursionError; typed into a field it must only be ✗."""
    from nanochat_tui.tui.screens.config import ConfigPane

    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        error = app.query_one(ConfigPane).apply_edit("model.depth", "[" * 2000)
        assert error and "nested more than 32 levels" in error
        assert app.state.config.model.depth == 2


async def test_tagged_user_prefabs_never_stop_the_app(screen_text, type_into) -> None:
    """Regression (issue 25 item 10): ``!!int 1.5`` in a user prefab raised a bare ValueError from
    the YAML constructor: the saved prefab, a user ``tiny.yaml`` or the picker's listing stopped
    the app from opening, and typing the same value in a field took the app down."""
    import json

    from nanochat_tui import paths
    from nanochat_tui.tui.screens.config import ConfigPane
    from nanochat_tui.tui.state import state_path

    user = paths.user_prefabs_dir()
    (user / "mine.yaml").write_text("model:\n  depth: !!int 1.5\n")
    (user / "tiny.yaml").write_text("model:\n  depth: !!bool maybe\n")  # shadows the bundled one
    state_path().write_text(json.dumps({"prefab": "mine", "last_pane": "config"}))
    app = NanochatApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot_wait_for(pilot, lambda: app.started or app.startup_error is not None)
        await pilot.pause()
        assert app.startup_error is None and app.state.prefab_name == "bundled:tiny"
        assert any("!!int needs a whole number" in w for w in app.startup_warnings)
        labels = {v: str(label) for label, v in app.query_one(ConfigPane)._prefab_options()}
        assert labels["mine"] == "✗ mine  broken" and labels["tiny"] == "✗ tiny  broken"
        assert labels["bundled:tiny"] == "bundled:tiny  bundled"
        await type_into(pilot, "#f-model--depth", "!!int 1.5")
        assert "!!int needs a whole number" in screen_text(app)
        assert app.query_one("#f-model--depth").parent.has_class("-error")
        assert app.is_running  # '!!int 1' on the way applied; '!!int 1.5' did not
        assert app.state.config.model.depth == 1


async def test_a_stale_cpu_rate_is_measured_again_in_a_worker(monkeypatch, screen_text) -> None:
    """Regression (issue 25.18): the CPU rate was measured once and cached forever. A week-old
    rate is shown with its range while a worker (not the UI thread) measures it again."""
    import json
    import threading
    import time

    from nanochat_tui.config import machine
    from nanochat_tui.tui.screens.config import ConfigPane

    monkeypatch.delenv(machine.PROFILE_ENV)
    machine.cpu_profile.cache_clear()
    old = time.time() - 8 * 86400
    record = {"key": machine.cache_key(), "flops": 1e9, "low": 0.9e9, "high": 1.1e9}
    path = machine.cache_dir() / machine.CACHE_FILE
    path.write_text(json.dumps({**record, "measured_at": old, "busy": 0.1}))
    release, threads = threading.Event(), []
    real = machine.time_matmuls

    def gated() -> list[float]:  # the real measurement, once the test has seen the old rate
        threads.append(threading.current_thread())
        assert release.wait(30)
        return real()

    monkeypatch.setattr(machine, "time_matmuls", gated)
    monkeypatch.setattr(machine, "busy_share", lambda: 0.0)  # a quiet machine, as told
    had_jax = "jax" in sys.modules
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await pilot_wait_for(pilot, lambda: threads, what="the measuring worker")
        pane = app.query_one(ConfigPane)
        await pilot.pause()
        text = screen_text(app)
        assert "4.3–9.1h" in text  # tiny at the old 1 GFLOP/s, as a range
        assert "CPU rate measured 8 days ago; measuring again…" in text
        assert threads[0] is not threading.main_thread()
        release.set()
        await pilot_wait_for(pilot, lambda: not pane.measuring_cpu, what="the measurement")
        await pilot.pause()
        text = screen_text(app)
        assert "measuring again" not in text and "4.3–9.1h" not in text
    saved = json.loads(path.read_text())
    assert saved["measured_at"] > old + 7 * 86400 and saved["flops"] != 1e9
    assert had_jax or "jax" not in sys.modules
