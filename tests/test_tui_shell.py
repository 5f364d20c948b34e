"""The app shell, driven by keys: pane switching, help, palette, user keymap, state restore,
shared-message broadcast, broken panes, quit confirmation, debug log, crash dump."""

from __future__ import annotations

from typing import ClassVar

import pytest
from textual.widget import Widget
from textual.widgets import Static

from nanochat_tui import logging_setup, paths, secrets
from nanochat_tui.plugin_host import get_registry, reset_registry
from nanochat_tui.tui.app import NanochatApp
from nanochat_tui.tui.messages import ConfigChanged

pytestmark = pytest.mark.anyio
SIZE = (100, 30)
SECRET = "Zz9" * 15  # 45 chars; not shaped like a wandb key, so only the secret cache can scrub it


class EchoPane(Widget):
    """A pane that records the shared messages it receives and posts one on 'x'."""

    BINDINGS: ClassVar = [("x", "announce", "Announce")]

    def __init__(self) -> None:
        super().__init__()
        self.received: list[str] = []

    def compose(self):
        yield Static("echo pane")

    def action_announce(self) -> None:
        self.post_message(ConfigChanged(self.app.state.config))

    def on_config_changed(self, message: ConfigChanged) -> None:
        self.received.append("config")


class BoomPane(Widget):
    def on_mount(self) -> None:
        raise RuntimeError(f"pane exploded holding {secrets.get_secret('wandb')}")


class FakeRun:
    name = "r1"
    mode = "thread"

    def __init__(self) -> None:
        self.stopped = False

    def is_alive(self) -> bool:
        return not self.stopped

    def status(self) -> str:
        return "running"

    def stop(self) -> None:
        self.stopped = True

    def stop_and_wait(self, timeout: float | None = None) -> str:
        self.stopped = True
        return "stopped"


async def started(pilot, timeout: float = 20.0) -> None:
    """Wait for the two-frame start-up (state built, start pane mounted), or for it to fail;
    slow on a loaded box."""
    import time

    app = pilot.app
    deadline = time.monotonic() + timeout
    while not app.started and app.startup_error is None and time.monotonic() < deadline:
        await pilot.pause(0.02)
    await pilot.pause()


@pytest.fixture
def extra_panes():
    reset_registry()
    registry = get_registry()
    registry.add_screen("echo", "Echo", "E", "test_tui_shell:EchoPane", order=70)
    registry.add_screen("broken", "Broken", "B", "no_such_module_xyz:Pane", order=80)
    registry.add_screen("boom", "Boom", "O", "test_tui_shell:BoomPane", order=90)
    yield registry
    reset_registry()


async def test_keys_switch_panes_and_tabs_show_titles(screen_text) -> None:
    app = NanochatApp()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert app.active_pane == "config"
        tabs = screen_text(app).splitlines()[0]
        # ten panes do not fit at this width: inactive tabs shrink to their keys, the active one
        # keeps its title, and the help hint stays
        for label in ("1 Config", " 6 ", "? help"):
            assert label in tabs
        await pilot.press("6")
        await pilot.pause()
        assert app.active_pane == "auth"
        text = screen_text(app)
        assert "6 Auth" in text.splitlines()[0] and "Weights & Biases API key" in text
        await pilot.press("escape", "1")  # esc leaves the key field (focused on entry)
        assert app.active_pane == "config"


async def test_help_lists_keymap(screen_text) -> None:
    app = NanochatApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        text = screen_text(app)
        for needle in (
            "app.quit",
            "pane.config",
            "pane.auth",
            "config.save_as",
            "Save as prefab",
            "^d",
        ):
            assert needle in text, needle
        await pilot.press("escape")
        await pilot.pause()
        assert "app.quit" not in screen_text(app)


async def test_palette_lists_current_pane_actions(screen_text) -> None:
    app = NanochatApp()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        text = screen_text(app)
        assert "Save config as prefab" in text and "Reset overrides" in text
        assert "Delete W&B key" not in text
        await pilot.press("escape", "6", "ctrl+p")
        await pilot.pause(0.3)
        text = screen_text(app)
        assert "Delete W&B key" in text and "Save config as prefab" not in text
        await pilot.press(*"help")
        await pilot.pause(0.3)
        assert "Help: keys" in screen_text(app)
        await pilot.press("enter")
        await pilot.pause()
        assert "app.quit" in screen_text(app)  # the help screen opened from the palette


async def test_user_keymap_remaps_keys() -> None:
    (paths.config_dir() / "keymap.yaml").write_text("pane.auth: a\napp.help: f1\n")
    app = NanochatApp()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("6")
        await pilot.pause()
        assert app.active_pane == "config"  # 6 no longer switches
        await pilot.press("a")
        await pilot.pause()
        assert app.active_pane == "auth"
        await pilot.press("escape", "f1")  # esc leaves the key field (focused on entry)
        await pilot.pause()
        from nanochat_tui.tui.screens.help import HelpScreen

        assert isinstance(app.screen, HelpScreen)


async def test_bad_keymap_file_warns_not_crashes() -> None:
    (paths.config_dir() / "keymap.yaml").write_text("pane.auth: [\n")
    app = NanochatApp()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert any("keymap ignored" in w for w in app.startup_warnings)


async def test_state_restored_on_restart(type_into) -> None:
    app = NanochatApp()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await type_into(pilot, "#f-model--depth", "3")
        await pilot.press("escape", "6", "escape", "q")
    app2 = NanochatApp()
    async with app2.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert app2.active_pane == "auth"
        assert app2.state.prefab_name == "tiny"
        assert app2.state.overrides == {"model.depth": 3}
        assert app2.state.config.model.depth == 3


async def test_shared_messages_rebroadcast_and_broken_pane(extra_panes, screen_text) -> None:
    app = NanochatApp()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("E")
        await pilot.pause()
        echo = app.query_one(EchoPane)
        await pilot.press("1")  # config pane edits -> echo pane hears about it
        await pilot.pause()
        app.query_one("#pane-config").post_message(ConfigChanged(app.state.config))
        await pilot.pause()
        assert echo.received == ["config"]
        await pilot.press("B")
        await pilot.pause()
        text = screen_text(app)
        assert "could not be opened" in text and "no_such_module_xyz" in text
        assert app.active_pane == "broken"


async def test_quit_with_alive_thread_run_asks(screen_text) -> None:
    app = NanochatApp()
    run = FakeRun()
    app.state.run = run
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert "r1 running" in screen_text(app)
        await pilot.press("q")
        await pilot.pause()
        await pilot.pause()
        from nanochat_tui.tui.screens.quit import QuitScreen

        assert isinstance(app.screen, QuitScreen)
        assert "stop it gracefully" in str(app.screen.query_one("#quit-question").render())
        await pilot.press("c")
        await pilot.pause()
        assert not run.stopped and app.is_running
        await pilot.press("q", "s")
        for _ in range(20):
            await pilot.pause(0.05)
            if not app.is_running:
                break
    assert run.stopped


async def test_debug_toggle_shows_log_and_writes_file() -> None:
    app = NanochatApp()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        panel = app.query_one("#debug-log")
        assert not panel.display
        await pilot.press("ctrl+d")
        await pilot.pause()
        assert panel.display and logging_setup.is_debug()
        await pilot.press("6", "escape")  # esc: out of the key field, whose ctrl+d deletes
        await pilot.pause()
        assert len(panel.lines) > 0
        await pilot.press("ctrl+d")
        await pilot.pause()
        assert not panel.display
    text = logging_setup.log_path().read_text()
    assert '"level": "debug"' in text and "pane auth shown" in text


async def test_crash_writes_dump_without_secret(extra_panes) -> None:
    secrets.set_secret("wandb", SECRET)
    app = NanochatApp()
    with pytest.raises(RuntimeError):
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await pilot.press("O")
            await pilot.pause()
    assert app.crash_path is not None and app.crash_path.is_file()
    body = app.crash_path.read_text()
    assert "pane exploded" in body and SECRET not in body and "***" in body
    assert SECRET not in logging_setup.log_path().read_text()


async def test_checkpoint_and_device_reach_status_bar_and_persist(screen_text) -> None:
    import json

    from nanochat_tui.rundir import CheckpointInfo, meta_path
    from nanochat_tui.tui.messages import CheckpointLoaded, DeviceInfo

    step_dir = paths.runs_dir() / "run1" / "checkpoints" / "100"
    meta_path(step_dir).parent.mkdir(parents=True)
    meta_path(step_dir).write_text(json.dumps({"step": 100, "run_name": "run1"}))
    app = NanochatApp()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert "device: not initialised" in screen_text(app)
        pane = app.query_one("#pane-config")
        pane.post_message(CheckpointLoaded(CheckpointInfo(step_dir, 100, {"step": 100})))
        pane.post_message(DeviceInfo({"platform": "cpu", "device_kind": "cpu", "count": 1}))
        await pilot.pause()
        text = screen_text(app)
        assert "new runs from run1@100" in text and "device: cpu" in text
        await pilot.press("q")
    app2 = NanochatApp()
    assert app2.state.checkpoint is not None and app2.state.checkpoint.step == 100


async def test_start_draws_chrome_first_then_builds_state_and_pane(screen_text) -> None:
    app = NanochatApp(prefab="tiny")
    assert not app.state_loaded  # constructing the app builds nothing (first frame stays cheap)
    frames: list[tuple[bool, bool]] = []
    display = app._display

    def record(screen, renderable) -> None:
        display(screen, renderable)
        if renderable is not None:
            frames.append((app.state_loaded, bool(app.query("#pane-config"))))

    app._display = record
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.pause()
        assert app.started and app.active_pane == "config"
        assert not app.query("#loading")
        assert "Prefab" in screen_text(app) and "CONFIG" in screen_text(app)
    assert frames[0] == (False, False), "first frame should be the chrome, before the config layer"
    assert (True, True) in frames


async def test_bad_explicit_prefab_leaves_with_its_error() -> None:
    from nanochat_tui.config import ConfigError

    app = NanochatApp(prefab="no-such-prefab-xyz")
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
    assert isinstance(app.startup_error, ConfigError)
    assert app.return_code == 2


async def test_pane_whose_module_exits_is_disabled_not_fatal(
    tmp_path, monkeypatch, screen_text
) -> None:
    """A plugin pane raising SystemExit on import shows the error pane; the app keeps running."""
    (tmp_path / "exiting_pane_mod.py").write_text("raise SystemExit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reset_registry()
    get_registry().add_screen("exits", "Exits", "E", "exiting_pane_mod:Pane", order=70)
    try:
        app = NanochatApp()
        async with app.run_test(size=SIZE) as pilot:
            await started(pilot)
            await pilot.press("E")
            await pilot.pause()
            assert app.active_pane == "exits"
            assert "could not be opened" in screen_text(app)
            await pilot.press("1")
            await pilot.pause()
            assert app.active_pane == "config" and app.is_running
    finally:
        reset_registry()
