"""NanochatApp: the shell hosting registry panes, palette, help, status bar, debug log, crash hook.

Panes come from the plugin registry (``registry.add_screen(name, title, key, "module:Class")``);
each is a Widget mounted lazily in a ContentSwitcher the first time it is shown. Panes share
``app.state`` (tui/state.py) and announce changes with tui/messages.py messages, which the app
re-broadcasts to every mounted pane. Nothing here imports JAX.

Start-up is two frames: the first shows the chrome (tab strip, status row) with a one-line
"loading prefab" body; right after it is painted, ``app.state`` is built (this imports the config
layer: pydantic, yaml) and the start pane is mounted. Anything that reads ``app.state`` earlier
(tests, a pane key pressed during start-up) builds it on the spot, so ``app.state`` is always
usable. benchmarks/first_frame.py measures both moments.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import ContentSwitcher, RichLog, Static

from nanochat_tui import logging_setup
from nanochat_tui.plugin_host import get_registry
from nanochat_tui.registry import ScreenEntry, resolve
from nanochat_tui.tui import keymap as km
from nanochat_tui.tui import textual_fixes, worker_errors
from nanochat_tui.tui.commands import ShellCommands
from nanochat_tui.tui.idle_gc import IdleCollector
from nanochat_tui.tui.messages import (
    AuthChanged,
    CheckpointLoaded,
    ConfigChanged,
    DeviceInfo,
    RunChanged,
    SharedMessage,
)
from nanochat_tui.tui.state import AppState, read_saved, restore, startup_prefab
from nanochat_tui.tui.widgets.eventlog import EventLog
from nanochat_tui.tui.widgets.statusbar import StatusBar
from nanochat_tui.tui.widgets.tabstrip import TabStrip
from nanochat_tui.tui.worker_errors import ReportsWorkerErrors

textual_fixes.apply()

log = logging.getLogger("nanochat_tui.tui")
# A graceful stop waits for the current step and a checkpoint: minutes on a big model.
QUIT_STOP_TIMEOUT_S = 600.0


class PaneError(Static):
    """Shown in place of a pane whose class failed to import or construct."""

    DEFAULT_CSS = "PaneError { padding: 1 2; color: $error; }"

    def __init__(self, entry: ScreenEntry, err: BaseException, **kwargs: Any) -> None:
        text = Text()
        text.append(f"The '{entry.title}' pane could not be opened.\n\n", "bold")
        text.append(f"{type(err).__name__}: {err}\n\n")
        text.append(f"It is registered as {entry.ref}. ", "dim")
        text.append("Check that the module exists and imports (see the app log), or update.", "dim")
        super().__init__(text, **kwargs)


class ShellScreen(Screen):
    """The app's base screen. It never picks a widget to focus by itself (Textual's default
    focuses the first focusable widget whenever the screen comes back with nothing focused: after
    a modal closed on Chat that was the temperature field, so the next pane key typed into it).
    The app focuses what the active pane asks for (``_focus_pane``), and nothing else."""

    AUTO_FOCUS = ""

    def on_screen_resume(self) -> None:
        """Back from a modal: give the active pane the focus it missed if it was shown while the
        modal was up (the Designer's p switches to Runs, which may ask first)."""
        refocus = getattr(self.app, "refocus_active_pane", None)
        if callable(refocus):
            refocus()


def is_text_field(widget: Widget | None) -> bool:
    """True for a widget that takes typed text (its single keys are characters, not shortcuts):
    an Input or a TextArea, by class name so that TextArea is not imported for the first frame."""
    return widget is not None and any(
        cls.__name__ in ("Input", "TextArea") and cls.__module__.startswith("textual.widgets")
        for cls in type(widget).__mro__
    )


class NanochatApp(ReportsWorkerErrors, App[int]):
    """The nanochat-tui cockpit."""

    TITLE = "nanochat-tui"
    # read here rather than CSS_PATH, which Textual resolves against each subclass's source file
    CSS = (Path(__file__).with_name("app.tcss")).read_text(encoding="utf-8")
    COMMANDS: ClassVar[set] = {ShellCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        *km.bindings_for(list(km.GLOBAL_KEYS)),
        Binding(
            "escape", "blur", "Leave the field (then keys switch panes)", show=False, id="app.blur"
        ),
    ]

    def __init__(
        self,
        *,
        prefab: str | None = None,
        overrides: list[str] | None = None,
        attach: Path | None = None,
        debug: bool = False,
    ) -> None:
        super().__init__()
        self.registry = get_registry()
        self._prefab_arg = prefab
        self._overrides_arg = overrides
        self._state: AppState | None = None
        self.startup_warnings: list[str] = []
        self.startup_error: Exception | None = None  # an explicit --prefab that does not load
        self.idle_gc = IdleCollector()
        self.started = False  # True once the state is built and the start pane mounted
        self._start_scheduled: bool | None = None
        self._pane_requested = False  # set by the first action_switch_pane
        self.attach_dir = attach
        self.start_debug = debug
        self.crash_path: Path | None = None
        self.user_keymap, keymap_warnings = km.load_user_keymap()
        self.startup_warnings += keymap_warnings
        self.pane_entries = self.registry.ordered_screens()
        for binding in Binding.make_bindings(km.bindings_for(km.pane_keys(self.pane_entries))):
            self._bindings.key_to_bindings.setdefault(binding.key, []).append(binding)
        self.active_pane: str | None = None
        self._main_thread = threading.get_ident()
        self.quitting: str | None = None  # "stop" / "background" while a quit hand-off runs
        self.exiting = False  # set by exit(): input that arrives after it is dropped
        self._asking_quit = False  # the "quit anyway?" question is up
        self.offered_run: Any = None  # a run attached at the last exit that has since ended

    # ------------------------------------------------------------ shared state

    @property
    def state(self) -> AppState:
        """The shared state, built on first use (restore(): state.json, prefab, overrides).

        Raises config.ConfigError if a prefab given explicitly does not load."""
        if self._state is None:
            self._state, warnings = restore(self._prefab_arg, self._overrides_arg)
            self.startup_warnings += warnings
        return self._state

    @state.setter
    def state(self, value: AppState) -> None:
        self._state = value

    @property
    def state_loaded(self) -> bool:
        return self._state is not None

    def _ensure_state(self) -> bool:
        """Build the state; on a bad explicit prefab remember the error and leave (tui_cmd
        re-raises it, so the user gets the same one-line error as before)."""
        if self._state is not None:
            return True
        from nanochat_tui.config import ConfigError

        try:
            self.state  # noqa: B018 - builds it
        except ConfigError as err:
            self.startup_error = err
            self.exit(1, return_code=2)
            return False
        return True

    # ------------------------------------------------------------ layout

    def get_default_screen(self) -> Screen:
        return ShellScreen(id="_default")

    def compose(self) -> ComposeResult:
        # kept as attributes: app.query_one() searches the *active* screen, which may be a modal
        self.tab_strip = TabStrip(id="tabs")
        self.switcher = ContentSwitcher(id="panes", initial="loading")
        self.debug_log = RichLog(
            id="debug-log", classes="hidden", max_lines=500, wrap=False, markup=False
        )
        self.status_bar = StatusBar(id="status")
        self.event_log: EventLog | None = None  # mounted the first time it is shown
        yield self.tab_strip
        with self.switcher:
            yield Static(
                Text(f"loading prefab '{startup_prefab(self._prefab_arg)}'…", "dim"),
                id="loading",
                classes="pane-loading",
            )
        yield self.debug_log
        yield self.status_bar

    async def on_mount(self) -> None:
        self.theme = "textual-dark"
        self.log_file = logging_setup.setup_logging(self.start_debug)
        logging_setup.add_listener(self._on_log_record)
        if self.user_keymap:
            self.set_keymap(self.user_keymap)
        for plugin, error in self.registry.failed.items():
            self.notify(f"plugin {plugin} failed to load: {error}", severity="error", timeout=8)
        # first frame: the chrome, with the start pane's tab lit; the pane follows it
        self._show_tabs(self._start_pane(read_saved().get("last_pane")))
        self.status_bar.update(
            Text.assemble(("STARTING", "bold"), (" │ loading config…", "dim"), no_wrap=True)
        )
        self._start_scheduled = True
        self.call_after_refresh(self._finish_start)

    def _start_pane(self, last_pane: object) -> str | None:
        names = [e.name for e in self.pane_entries]
        if self.attach_dir is not None and "live" in names:
            return "live"
        return last_pane if last_pane in names else (names[0] if names else None)

    async def _finish_start(self) -> None:
        """After the first frame: build the state, show the start pane, then the slow extras."""
        if self._start_scheduled is False:
            return  # already ran
        self._start_scheduled = False
        if not self._ensure_state():
            return
        log.info(
            "app started (prefab=%s, panes=%s)",
            self.state.prefab_name,
            [e.name for e in self.pane_entries],
        )
        for warning in self.startup_warnings:
            log.warning(warning)
            self.notify(warning, severity="warning", timeout=8)
        if self.attach_dir is not None:
            self._attach(self.attach_dir)
        else:
            self._reattach_saved()
        start = self._start_pane(self.state.last_pane)
        if start and not self._pane_requested:  # a pane key pressed meanwhile wins
            await self.action_switch_pane(start)
        elif not self._pane_requested:
            self._drop_loading()
            self._update_chrome()
        self.started = True
        # keyring backends are slow to import: read the W&B key's place after the pane is painted
        self.call_after_refresh(self.refresh_wandb_status)
        self.idle_gc.install()
        self.set_interval(1.0, self._tick)

    def attach_handle(self, handle: Any, *, switch: bool = True) -> None:
        """Make ``handle`` the attached run (every pane hears RunChanged); show it on Live."""
        self.post_message(RunChanged(handle))
        if switch and self.pane_entry("live") is not None:
            self.call_later(self.run_action, "switch_pane('live')")

    def _reattach_saved(self) -> None:
        """Re-attach the run that was attached when the app last closed (offer it if it ended)."""
        saved = self.state.saved_run
        if saved is None or self.state.run is not None:
            return
        from nanochat_tui.orchestrator.runner import attach, summarize

        try:
            summary = summarize(saved)
            handle = attach(saved)
        except Exception as err:
            log.warning("cannot re-attach %s: %s", saved, err)
            return
        if summary.status == "running":
            self.state.run = handle
            self.post_message(RunChanged(handle))
            self.notify(f"re-attached to run {summary.name} (running)", timeout=4)
        else:
            self.offered_run = handle
            self.notify(
                f"run {summary.name} ended while you were away ({summary.status}); "
                "ctrl+p → 'Attach' shows it, or resume it from Runs (4, u)",
                timeout=8,
            )

    def _attach(self, run_dir: Path) -> None:
        try:
            from nanochat_tui.orchestrator.runner import attach

            self.state.run = attach(Path(run_dir))
        except Exception as err:
            self.report_error(f"cannot attach to {run_dir}: {err}")
            return
        self.post_message(RunChanged(self.state.run))

    def _tick(self) -> None:
        if self._state is not None:
            self.status_bar.refresh_status()
        self.idle_gc.tick()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.InputEvent):
            if self.exiting:
                return  # the app is closing: a key typed after q acts on nothing (it crashed)
            if isinstance(event, (events.Key, events.MouseDown)):
                self.idle_gc.input_seen()
        await super().on_event(event)

    # ------------------------------------------------------------ panes

    def pane_entry(self, name: str) -> ScreenEntry | None:
        return self.registry.screens.get(name)

    def active_pane_widget(self) -> Widget | None:
        if self.active_pane is None:
            return None
        found = self.switcher.query(f"#pane-{self.active_pane}")
        return found.first() if found else None

    def mounted_panes(self) -> list[Widget]:
        return [w for w in self.switcher.children if (w.id or "").startswith("pane-")]

    def _drop_loading(self) -> None:
        for widget in self.switcher.query("#loading"):
            widget.remove()

    async def action_switch_pane(self, name: str) -> None:
        """Show a registered pane, importing and mounting it the first time."""
        entry = self.pane_entry(name)
        if entry is None:
            self.notify(f"no pane named '{name}'", severity="warning")
            return
        if self.exiting:
            return  # nothing can be mounted once exit() was called
        if not self._ensure_state():
            return
        self._pane_requested = True
        switcher = self.switcher
        pane_id = f"pane-{name}"
        if not switcher.query(f"#{pane_id}"):
            widget = self._build_pane(entry)
            widget.id = pane_id
            await switcher.mount(widget)
        switcher.current = pane_id
        self._drop_loading()
        self.active_pane = name
        self.state.last_pane = name
        self._update_chrome()
        self.call_after_refresh(self._focus_pane, pane_id)
        log.debug("pane %s shown", name)

    def _build_pane(self, entry: ScreenEntry) -> Widget:
        try:
            cls = resolve(entry.ref)
            if not (isinstance(cls, type) and issubclass(cls, Widget)):
                raise TypeError(f"{entry.ref} is not a textual Widget subclass")
            return cls()
        except BaseException as err:  # a plugin's pane must not take the app down
            if type(err) is KeyboardInterrupt:
                raise
            log.exception("pane %s failed to open", entry.name)
            return PaneError(entry, err)

    def _focus_pane(self, pane_id: str, force: bool = False, *, typing: bool = True) -> None:
        """Focus what the pane asks for (``initial_focus()``: its text field, when typing is what
        the pane is for), else its first focusable widget that is not a text field.

        ``typing=False`` (escape, leaving a field) never picks a text field: single keys then
        switch panes and run the pane's commands."""
        if self.screen is not self.screen_stack[0]:
            return  # a modal is up; leave its focus alone
        found = self.switcher.query(f"#{pane_id}")
        if not found:
            return
        pane = found.first()
        if not force and self.focused is not None and pane in self.focused.ancestors_with_self:
            return
        preferred = getattr(pane, "initial_focus", None)
        target = preferred() if callable(preferred) else None
        if not typing and is_text_field(target):
            target = None
        if target is None:
            for widget in pane.query("*"):
                if widget.focusable and not is_text_field(widget):
                    target = widget
                    break
        if target is None and pane.focusable:
            target = pane
        self.set_focus(target)

    def refocus_active_pane(self) -> None:
        """Focus the active pane when the focus sits in another one (hidden: keys typed there
        went to a pane not shown). Nothing focused stays so (after esc)."""
        pane = self.active_pane_widget()
        focused = self.focused
        if pane is None or focused is None or pane in focused.ancestors_with_self:
            return
        self._focus_pane(f"pane-{self.active_pane}", force=True)

    def _show_tabs(self, active: str | None) -> None:
        tabs = [
            (e.name, km.effective_key(s, self.user_keymap), e.title)
            for e, s in zip(self.pane_entries, km.pane_keys(self.pane_entries), strict=False)
        ]
        self.tab_strip.show(tabs, active or "", self.header_hint())

    def header_hint(self) -> str:
        """'? help ^p cmds', following the user's keymap."""
        by_id = {spec.id: spec for spec in km.GLOBAL_KEYS}
        help_key = km.display_key(km.effective_key(by_id["app.help"], self.user_keymap))
        palette = km.display_key(km.effective_key(by_id["app.palette"], self.user_keymap))
        return f"{help_key} help {palette} cmds"

    def _update_chrome(self) -> None:
        self._show_tabs(self.active_pane)
        if self._state is None:
            return  # still starting: the status row keeps its "loading" text
        status = self.status_bar
        entry = self.pane_entry(self.active_pane or "")
        status.pane_title = entry.title.upper() if entry else ""
        status.refresh_status()

    def on_resize(self) -> None:
        if self.is_mounted and self.active_pane:
            self._update_chrome()

    # ------------------------------------------------------------ shared messages

    def _broadcast(self, message: SharedMessage) -> None:
        if message.broadcast:
            return
        sender = getattr(message, "_sender", None)
        for pane in self.mounted_panes():
            if sender is not None and (sender is pane or pane in getattr(sender, "ancestors", [])):
                continue
            pane.post_message(message.copy_for_broadcast())
        if self._state is not None:
            self.status_bar.refresh_status()

    def on_config_changed(self, message: ConfigChanged) -> None:
        if not message.broadcast and message.config is not None:
            self.state.config = message.config
        self._broadcast(message)

    def on_checkpoint_loaded(self, message: CheckpointLoaded) -> None:
        if not message.broadcast:
            self.state.checkpoint = message.info
        self._broadcast(message)

    def on_run_changed(self, message: RunChanged) -> None:
        if not message.broadcast:
            self.state.run = message.run
        run = message.run
        if self.event_log is not None:
            self.event_log.follow(Path(run.run_dir) if run is not None else None)
        self._broadcast(message)

    def on_device_info(self, message: DeviceInfo) -> None:
        if not message.broadcast:
            self.state.device = message.summary
        self._broadcast(message)

    def on_auth_changed(self, message: AuthChanged) -> None:
        self.refresh_wandb_status()
        self._broadcast(message)

    def refresh_wandb_status(self) -> None:
        """Re-read where the W&B key is, off the UI thread (keyring backends are slow to import)."""
        self.run_worker(self._read_wandb_status, thread=True, group="wandb-status", exclusive=True)

    def _read_wandb_status(self) -> None:
        from nanochat_tui.secrets import secret_status

        try:
            backend = secret_status("wandb").backend
        except Exception:
            backend = None
        self.call_from_thread(self._show_wandb_status, backend)

    def _show_wandb_status(self, backend: str | None) -> None:
        self.status_bar.wandb_backend = backend
        if self._state is not None:
            self.status_bar.refresh_status()

    # ------------------------------------------------------------ keys, help, palette

    def key_rows(self) -> list[tuple[km.KeySpec, str]]:
        """(spec, effective key) for help: global keys, pane switches, then every pane's own keys
        (scope = the pane's title), the active pane's first."""
        specs = list(km.GLOBAL_KEYS) + km.pane_keys(self.pane_entries)
        entries = sorted(self.pane_entries, key=lambda e: e.name != self.active_pane)
        for entry in entries:
            mounted = self.switcher.query(f"#pane-{entry.name}")
            if mounted:
                specs += km.widget_keys(mounted.first(), entry.title)
                continue
            try:
                specs += km.widget_keys(resolve(entry.ref), entry.title)
            except Exception as err:  # a broken pane's keys are simply not listed
                log.debug("no keys for pane %s: %s", entry.name, err)
        return [(s, km.effective_key(s, self.user_keymap)) for s in specs]

    def global_commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        from nanochat_tui.tui import steer

        cmds: list[tuple[str, str, Callable[[], object]]] = list(steer.run_commands(self))
        offered = self.offered_run
        if offered is not None and self._state is not None and self.state.run is None:
            cmds.append(
                (
                    f"Attach to run {offered.name} (attached at the last exit)",
                    "show it on the Live pane",
                    lambda: self.attach_handle(offered),
                )
            )
        checkpoint = self._state.checkpoint if self._state is not None else None
        if checkpoint is not None:
            from nanochat_tui.tui import init_from

            cmds.append(
                (
                    init_from.UNLOAD_TITLE,
                    f"{init_from.label(checkpoint)}: new runs start from scratch, Chat has no model",
                    lambda: init_from.unload(self),
                )
            )
        for entry in self.pane_entries:
            cmds.append(
                (
                    f"Switch to {entry.title}",
                    f"pane key {entry.key}",
                    lambda n=entry.name: self.run_action(f"switch_pane('{n}')"),
                )
            )
        cmds += [
            ("Help: keys", "every key binding and its id", self.action_help),
            ("Toggle event log", "the attached run's events (key l)", self.action_toggle_events),
            ("Serve a checkpoint", "OpenAI-compatible API on 127.0.0.1", self.action_serve),
            (
                "Launch on a cloud…",
                "the current config as a SkyPilot managed job: cost, task, confirm",
                self.action_launch,
            ),
            ("Generate synthetic data", "SOUL critique → revision pairs", self.action_generate),
            (
                "Review synthetic pairs",
                "accept, reject or edit before training",
                self.action_review,
            ),
            (
                "Toggle debug log",
                "flip debug level and show the log panel",
                self.action_toggle_debug,
            ),
            (
                "Quit",
                "leave the app (asks if a run, edits or a reply would be lost)",
                lambda: self.run_action("quit"),
            ),
        ]
        return cmds

    def action_serve(self) -> None:
        """Open the Serve screen (one instance, so a running server outlives closing it)."""
        if not self.is_screen_installed("serve"):
            from nanochat_tui.tui.screens.serve import ServeScreen

            self.install_screen(ServeScreen(), "serve")
        self.push_screen("serve")

    def action_launch(self) -> None:
        """Open the Launch screen on the current config (Config pane: ctrl+l)."""
        from nanochat_tui.tui.screens.launch import LaunchScreen

        self.push_screen(LaunchScreen(self.state.config, self.state.prefab_name))

    def action_generate(self) -> None:
        """Open the Generate screen (one instance, so a generation outlives closing it)."""
        if not self.is_screen_installed("generate"):
            from nanochat_tui.tui.screens.generate import GenerateScreen

            self.install_screen(GenerateScreen(), "generate")
        self.push_screen("generate")

    def action_review(self) -> None:
        """Open the Review screen on the newest synthetic set."""
        from nanochat_tui.tui.screens.review import ReviewScreen

        self.push_screen(ReviewScreen())

    def action_help(self) -> None:
        from nanochat_tui.tui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.key_rows(), km.keymap_display_path()))

    async def action_toggle_events(self) -> None:
        """Show or hide the attached run's event log (docked above the status row)."""
        if self.event_log is None:
            self.event_log = EventLog(id="event-log")
            self.event_log.display = False
            await self.mount(self.event_log, before=self.status_bar)
        shown = not self.event_log.display
        run = self._state.run if self._state is not None else None
        self.event_log.follow(Path(run.run_dir) if run is not None else None)
        self.event_log.set_shown(shown)
        if shown and run is None:
            self.notify("no run attached: the event log shows the attached run", timeout=3)

    def action_blur(self) -> None:
        """Leave a text field: focus the pane's non-text widget so pane keys and 1..9 work."""
        if self.active_pane:
            self._focus_pane(f"pane-{self.active_pane}", force=True, typing=False)

    def action_toggle_debug(self) -> None:
        panel = self.debug_log
        debug = not logging_setup.is_debug()
        logging_setup.set_debug(debug)
        panel.set_class(not debug, "hidden")
        log.info("debug logging %s", "on" if debug else "off")
        self.notify(f"debug log {'on' if debug else 'off'} ({self.log_file})", timeout=3)

    def _on_log_record(self, record: logging.LogRecord, line: str) -> None:
        if threading.get_ident() == self._main_thread:
            self._write_log_line(line)
        else:
            with contextlib.suppress(Exception):
                self.call_from_thread(self._write_log_line, line)

    def _write_log_line(self, line: str) -> None:
        if self.is_mounted:
            with contextlib.suppress(Exception):
                self.debug_log.write(line)

    def report_error(self, message: str) -> None:
        """Toast + log an error a user should see."""
        worker_errors.report_error(self, message)

    def log_error(self, message: str) -> None:
        log.error(message)

    # ------------------------------------------------------------ quit, state, crash

    def quit_concerns(self) -> list[str]:
        """What quitting now would lose, one line each, from every mounted pane's
        ``quit_concern()`` (SOUL edits not saved, a chat reply being written)."""
        concerns = []
        for pane in self.mounted_panes():
            ask = getattr(pane, "quit_concern", None)
            concern = ask() if callable(ask) else None
            if concern:
                concerns.append(concern)
        return concerns

    async def action_quit(self) -> None:
        """Quit. Asks first when a pane would lose something (unsaved SOUL edits, a chat reply in
        progress); a live in-app (thread) run is then stopped or moved to the background."""
        from nanochat_tui.tui.screens.confirm import ConfirmScreen
        from nanochat_tui.tui.screens.quit import QuitScreen

        if self.quitting is not None or self._asking_quit or isinstance(self.screen, QuitScreen):
            return  # already asking, or the hand-off is under way (the app exits after it)
        concerns = self.quit_concerns()
        if not concerns:
            self._quit_or_hand_off()
            return

        def answered(yes: bool | None) -> None:
            self._asking_quit = False
            if yes:
                self._quit_or_hand_off()

        self._asking_quit = True
        question = "\n".join(["Quit now?", *(f"  • {c}" for c in concerns)])
        self.push_screen(ConfirmScreen(question, yes="Quit", no="Stay"), answered)

    def _quit_or_hand_off(self) -> None:
        """Exit, or first ask what to do with a live in-app (thread) run."""
        from nanochat_tui.tui.screens.quit import QuitScreen

        run = self._state.run if self._state is not None else None
        try:
            alive = run is not None and getattr(run, "mode", "") == "thread" and run.is_alive()
        except Exception:
            alive = False
        if not alive:
            self.exit(0)
            return

        def answered(choice: str | None) -> None:
            if choice in ("stop", "background"):
                self.quitting = choice
                self.notify(
                    "stopping the run: saving a checkpoint…"
                    if choice == "stop"
                    else "moving the run to the background: checkpoint, then a detached resume…",
                    timeout=30,
                )
                self.run_worker(
                    lambda: self._hand_off_and_exit(run, choice),
                    thread=True,
                    name="Handing off the run",
                    group="quit",
                    exit_on_error=False,
                )

        self.push_screen(QuitScreen(getattr(run, "name", "?")), answered)

    def _hand_off_and_exit(self, run: Any, choice: str) -> None:
        """Worker: stop the thread run (or move it to a detached process), then leave."""
        from nanochat_tui.errors import UserError

        try:
            if choice == "background":
                from nanochat_tui.orchestrator.runner import move_to_background

                handle = move_to_background(run, timeout=QUIT_STOP_TIMEOUT_S)
                self.call_from_thread(self._set_attached, handle)
            else:
                run.stop_and_wait(QUIT_STOP_TIMEOUT_S)
        except (UserError, OSError) as err:
            self.call_from_thread(self._quit_failed, str(err))
            return
        self.call_from_thread(self.exit, 0)

    def _quit_failed(self, error: str) -> None:
        self.quitting = None
        self.report_error(f"not quitting: {error}")

    def _set_attached(self, handle: Any) -> None:
        self.state.run = handle  # saved in state.json: the next start re-attaches to it

    def exit(self, result: int | None = None, return_code: int = 0, message: Any = None) -> None:
        self.exiting = True
        self.save_state()
        super().exit(result, return_code, message)

    def save_state(self) -> None:
        if self._state is None:
            return  # left before the state was built: nothing changed
        try:
            path = self.state.save()
            log.info("ui state saved to %s", path)
        except Exception as err:
            log.warning("could not save ui state: %s", err)

    def _handle_exception(self, error: Exception) -> None:
        try:
            from nanochat_tui.crash import write_crash_dump

            self.crash_path = write_crash_dump(error)
            log.error("crashed with %s; crash dump %s", type(error).__name__, self.crash_path)
        except Exception:
            pass
        super()._handle_exception(error)

    def _fatal_error(self) -> None:
        """Replace Textual's locals-showing traceback (could expose secrets) with a short note."""
        from nanochat_tui.crash import known_secret_values, scrub

        self.bell()
        err = self._exception
        text = f"nanochat-tui crashed: {type(err).__name__}: {err}"
        if self.crash_path:
            text += f"\n  → crash dump (no secrets): {self.crash_path}"
        self._exit_renderables.append(Text(scrub(text, known_secret_values())))
        self._close_messages_no_wait()

    def on_unmount(self) -> None:
        self.idle_gc.uninstall()
        logging_setup.remove_listener(self._on_log_record)
