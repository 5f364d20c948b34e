"""Live pane (key 5): the configurable live screens of the attached run.

Screens and their panels come from the attached run's own ``ui.screens`` (the ``ui:`` section of
its config.yaml: an MoE run shows its expert heat-map whatever prefab is active), and with no run
attached from the active config's (the prefab's ``ui:`` section). Events are
read by tailing ``run_dir/events.jsonl`` in a thread worker (so a thread run, a detached run and a
finished run all look the same, and attaching rebuilds every panel from the full log); panels are
redrawn on a ``refresh_ms`` timer, only when new events arrived (coalescing = backpressure).

Keys: c checkpoint now · p patch · s stop · u resume (the attached run; tui/steer.py) ·
] / [ next/previous screen · a add panel · e edit focused panel · x remove focused panel ·
+ / - faster/slower refresh · w save the layout to a prefab.

Before the first step the header shows the start-up phase (``phase`` events: tokenizer, data,
model, compile, first step) with the time since the run started.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.widget import Widget
from textual.widgets import Static
from textual.worker import get_current_worker

from nanochat_tui.config import ConfigError
from nanochat_tui.config.schema import PanelSpec, ScreenSpec, UIConfig
from nanochat_tui.panels.chart import chart_builder
from nanochat_tui.panels.store import MetricStore
from nanochat_tui.telemetry.jsonl import JsonlTailer
from nanochat_tui.tui import steer
from nanochat_tui.tui.messages import DeviceInfo
from nanochat_tui.tui.panel_spec import panel_text, parse_panel_text
from nanochat_tui.tui.screens.prompt import PromptModal
from nanochat_tui.tui.widgets.panel_grid import PanelGrid
from nanochat_tui.tui.worker_errors import ReportsWorkerErrors

log = logging.getLogger("nanochat_tui.tui.live")

DEFAULT_SCREENS: tuple[ScreenSpec, ...] = (
    ScreenSpec(
        name="overview",
        refresh_ms=500,
        columns=2,
        panels=[
            PanelSpec(type="progress"),
            PanelSpec(type="loss", source="loss"),
            PanelSpec(type="validation", source="val_bpb"),
            PanelSpec(type="timers"),
        ],
    ),
    ScreenSpec(
        name="device",
        refresh_ms=1000,
        columns=2,
        panels=[PanelSpec(type="device"), PanelSpec(type="samples")],
    ),
)
TAIL_INTERVAL_S = 0.05
# The header shows the measured redraw interval when it lags the configured one by more than this
# factor (a loaded machine): the rate is never stretched on purpose, and never shown as faster.
LAG_SHOWN = 1.25


def freeze_heap() -> None:
    """Collect once, then move every live object out of the cyclic GC's reach (``gc.freeze``).

    With the app, JAX and a run in memory a full (gen 2) collection scans millions of objects and
    stalls the event loop for 50-200 ms at random moments: the p99 of key latency. Frozen objects
    are never scanned again; later collections only look at what was allocated since.
    """
    gc.collect()
    gc.freeze()


def run_screens(run_dir: Path) -> list[ScreenSpec] | None:
    """The live screens ``run_dir`` declares (``ui.screens`` of its config.yaml; [] for none), or
    None when it has no readable config.yaml (then the active config's are shown)."""
    from nanochat_tui import rundir
    from nanochat_tui.config.loader import load_yaml

    path = Path(run_dir) / rundir.CONFIG
    if not path.is_file():
        return None
    try:
        ui = load_yaml(path).get("ui") or {}
        return list(UIConfig.model_validate(ui).screens)
    except (ConfigError, ValueError) as err:  # pydantic's ValidationError is a ValueError
        log.warning("live screens of %s not read: %s", run_dir, err)
        return None


def run_device(run_start: dict[str, Any]) -> dict[str, Any]:
    """A status-bar device summary from a run_start event (``device`` is "platform:kind")."""
    platform, _, kind = str(run_start.get("device") or "?").partition(":")
    return {
        "platform": platform,
        "device_kind": kind or platform,
        "count": run_start.get("device_count", 1),
    }


# ---------------------------------------------------------------- the pane


class LivePane(ReportsWorkerErrors, Widget, can_focus=True):
    """Live screens of ``app.state.run`` (or any run dir passed to ``show_run_dir``)."""

    DEFAULT_CSS = """
    LivePane { layout: vertical; height: 1fr; }
    LivePane > #live-screens { height: 1fr; }
    LivePane > #live-header { height: 1; background: $boost; padding: 0 1; }
    LivePane:focus > #live-header { background: $accent 35%; }
    LivePane > #live-hint { height: 1; color: $text-muted; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("right_square_bracket", "next_screen", "Next live screen", id="live.next_screen"),
        Binding(
            "left_square_bracket", "prev_screen", "Previous live screen", id="live.prev_screen"
        ),
        Binding("a", "add_panel", "Add a panel", id="live.add_panel"),
        Binding(
            "e",
            "edit_panel",
            "Edit focused panel (source, thresholds, options)",
            id="live.edit_panel",
        ),
        Binding("x", "remove_panel", "Remove focused panel", id="live.remove_panel"),
        Binding("plus,equals_sign", "faster", "Refresh faster", id="live.faster"),
        Binding("minus", "slower", "Refresh slower", id="live.slower"),
        Binding("w", "save_layout", "Save layout to a prefab", id="live.save_layout"),
        Binding("c", "checkpoint", "Checkpoint the attached run now", id="live.checkpoint"),
        Binding("p", "patch", "Patch the attached run (key=value)", id="live.patch"),
        Binding("s", "stop", "Stop the attached run (asks first)", id="live.stop"),
        Binding("u", "resume", "Resume the attached run if it stopped", id="live.resume"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = MetricStore()
        self.screens: list[ScreenSpec] = []
        self.screen_index = 0
        self.run_dir: Path | None = None
        self.run_name = ""
        self.paint_count = 0
        self.last_paint = 0.0
        self.action_paint_count = 0  # completed repaints after key actions (benchmark hook)
        self.last_action_paint = 0.0
        self._timer: Any = None
        self.measured_ms: float | None = None  # EMA of the interval between redraws while shown
        self._last_tick: float | None = None
        self._generation = 0  # bumps on every (re)attach so a stale tail worker stops feeding
        self._declared: list[ScreenSpec] = []  # the screens as declared, before edits (a/e/x)

    # ------------------------------------------------------------ composition

    def compose(self) -> ComposeResult:
        # the pane's focus mark (not a tint of the whole pane: see ``_switcher``)
        yield Static("", id="live-header", classes="focus-mark")
        run = getattr(getattr(self.app, "state", None), "run", None)
        self._declared = self._declared_screens(Path(run.run_dir) if run is not None else None)
        self.screens = [s.model_copy(deep=True) for s in self._declared]
        yield self._switcher()
        yield Static(
            Text("c ckpt · p patch · s stop · u resume · [ ] screen · a/e/x panel · +/- · w save"),
            id="live-hint",
        )

    def _switcher(self) -> Container:
        """Every screen's grid, each on its own layer of one container, all laid out at full
        size; only the current one is visible.

        Hiding with ``visibility`` (not ``display``, as a ContentSwitcher does) keeps the hidden
        grids' sizes, so showing one again resizes nothing: its panels keep their rendered lines
        and the switch costs one repaint, not a re-layout plus a redraw of every panel.

        Textual lays out and renders only visible widgets, so a grid never shown would be laid
        out and rendered from scratch by the key that first shows it. So every grid is visible
        for the first frame, the current one on the top layer covering the others, and
        ``_hide_others`` hides the others after that frame: each has its size and its rendered
        lines from then on. (The pane's focus mark is on its header alone for the same reason: a
        style on the pane that children inherit, such as a tint, re-renders every panel of every
        grid when focus comes or goes.)
        """
        grids = []
        for i, spec in enumerate(self.screens):
            grid = PanelGrid(self.store, spec, id=f"live-screen-{i}")
            grid.styles.layer = f"screen{i}"
            grids.append(grid)
        box = Container(*grids, id="live-screens")
        below = [i for i in range(len(grids)) if i != self.screen_index]
        box.styles.layers = tuple(f"screen{i}" for i in [*below, self.screen_index])
        self.call_after_refresh(self._hide_others)
        return box

    def _hide_others(self) -> None:
        current = self.grid
        for grid in self.grids:
            if grid is not current:
                grid.styles.visibility = "hidden"

    @property
    def grids(self) -> list[PanelGrid]:
        """One grid per declared screen (all mounted; only the current one is visible)."""
        return list(self.query_one("#live-screens", Container).query_children(PanelGrid))

    @property
    def grid(self) -> PanelGrid:
        """The current screen's grid."""
        return self.query_one(f"#live-screen-{self.screen_index}", PanelGrid)

    @property
    def current(self) -> ScreenSpec:
        return self.screens[self.screen_index]

    async def on_mount(self) -> None:
        self._restart_timer()
        self.set_timer(0.5, freeze_heap)
        run = getattr(getattr(self.app, "state", None), "run", None)
        if run is not None:
            self.show_run_dir(Path(run.run_dir), name=getattr(run, "name", ""))
        self._update_header()

    def _declared_screens(self, run_dir: Path | None) -> list[ScreenSpec]:
        """The screens to show: ``run_dir``'s own (its config.yaml), else the active config's;
        the default overview and device screens when they declare none."""
        screens = run_screens(run_dir) if run_dir is not None else None
        if screens is None:
            config = getattr(getattr(self.app, "state", None), "config", None)
            screens = list(config.ui.screens) if config is not None else []
        return [s.model_copy(deep=True) for s in (screens or DEFAULT_SCREENS)]

    async def _show_declared(self, run_dir: Path | None) -> None:
        """Rebuild the screens when what is declared for ``run_dir`` (None: no run) changed; the
        same declaration keeps the layout as edited (a/e/x, refresh rate)."""
        declared = self._declared_screens(run_dir)
        if declared == self._declared or not self.is_mounted:
            return
        self._declared = declared
        self.screens = [s.model_copy(deep=True) for s in declared]
        self.screen_index = 0
        had_focus = self.has_focus_within
        switcher = self.query_one("#live-screens", Container)
        await switcher.remove()  # a new layout: the only time every grid is rebuilt
        await self.mount(self._switcher(), after="#live-header")
        focused = self.app.focused
        if (had_focus and focused is None) or (focused is not None and not focused.is_attached):
            self.focus()  # its focused panel is gone: keep the pane's keys working
        self._after_switch()

    # ------------------------------------------------------------ attaching + tailing

    def show_run_dir(self, run_dir: Path, *, name: str = "") -> None:
        """Rebuild every panel from ``run_dir/events.jsonl`` and keep tailing it."""
        from nanochat_tui.rundir import EVENTS

        self._generation += 1
        self.run_dir = Path(run_dir)
        self.run_name = name or self.run_dir.name
        self.call_later(self._show_declared, self.run_dir)  # the run's own screens
        self._set_store(MetricStore())
        self._tail(self.run_dir / EVENTS, self._generation)
        self._update_header()
        self.set_timer(2.0, freeze_heap)  # after the run's objects (and log replay) exist

    def _set_store(self, store: MetricStore) -> None:
        self.store = store
        for grid in self.grids:
            grid.store = store
            grid.drawn_version = -1

    def detach(self) -> None:
        self._generation += 1
        self.run_dir = None
        self.run_name = ""
        self._set_store(MetricStore())
        self.grid.tick(force=True)
        self._update_header()
        self.call_later(self._show_declared, None)  # the active config's screens again

    @work(
        thread=True,
        name="Reading the run's events",
        group="live-tail",
        exclusive=True,
        exit_on_error=False,
    )
    def _tail(self, path: Path, generation: int) -> None:
        """Read new lines of events.jsonl forever (cheap when nothing is new)."""
        worker = get_current_worker()
        tailer = JsonlTailer(path)
        store = self.store
        while not worker.is_cancelled and generation == self._generation:
            events = tailer.read_new()
            if events:
                store.ingest(events)
                starts = [e for e in events if e.get("type") == "run_start"]
                if starts:  # the status bar's device field shows where the run trains
                    self.post_message(DeviceInfo(run_device(starts[-1])))
            else:
                time.sleep(TAIL_INTERVAL_S)

    def on_run_changed(self, message: Any) -> None:
        """tui.messages.RunChanged (re-broadcast by the app): follow the newly attached run."""
        run = message.run
        if run is None:
            self.detach()
        elif self.run_dir is None or Path(run.run_dir) != self.run_dir:
            self.show_run_dir(Path(run.run_dir), name=getattr(run, "name", ""))

    async def on_config_changed(self, message: Any) -> None:
        """tui.messages.ConfigChanged: adopt the new config's screens (e.g. another prefab),
        unless a run is attached: its own screens stay."""
        await self._show_declared(self.run_dir)

    # ------------------------------------------------------------ redraw timer

    def _restart_timer(self) -> None:
        self.measured_ms, self._last_tick = None, None
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_interval(
            self.current.refresh_ms / 1000, self._tick, name="live-refresh"
        )

    def _tick(self, force: bool = False) -> None:
        if not force:
            if not self._shown():
                self._last_tick = None  # another pane is active: redraw when shown again
                return
            self._measure()
        if self.grid.tick(force=force):
            self._update_header()
            self.call_after_refresh(self._painted)
        elif self.store.phase:
            self._update_header()  # the start-up phase's clock keeps running between events

    def _measure(self) -> None:
        """Fold the time since the previous timer tick into ``measured_ms`` (what the user gets)."""
        now = time.perf_counter()
        if self._last_tick is not None:
            ms = (now - self._last_tick) * 1000
            self.measured_ms = ms if self.measured_ms is None else 0.8 * self.measured_ms + 0.2 * ms
        self._last_tick = now

    def effective_ms(self) -> float:
        """The refresh interval the screen really gets (configured, or measured if slower)."""
        target = float(self.current.refresh_ms)
        measured = self.measured_ms
        return measured if measured is not None and measured > target * LAG_SHOWN else target

    def _shown(self) -> bool:
        """False while this pane (or an ancestor, e.g. the app's pane switcher) is hidden."""
        node: Any = self
        while node is not None and isinstance(node, Widget):
            if not node.display:
                return False
            node = node.parent
        return True

    def _painted(self) -> None:
        self.paint_count += 1
        self.last_paint = time.perf_counter()

    def _action_painted(self) -> None:
        """The screen refresh after a key action (switch screen, refresh rate) has completed."""
        self.action_paint_count += 1
        self.last_action_paint = time.perf_counter()
        chart_builder().release()

    def _update_header(self) -> None:
        if not self.screens:
            return
        text = Text()
        for i, s in enumerate(self.screens):
            text.append(f" {s.name} ", style="reverse bold" if i == self.screen_index else "")
        text.append("  ")
        if self.run_dir is None:
            text.append("no run attached — press 4 to start or attach one", style="dim")
        else:
            store = self.store
            text.append(self.run_name, style="bold")
            stage = store.run_start.get("stage")
            if stage:  # which stage this run (or pipeline step) trains: pretrain, sft, dpo, ...
                text.append(f" {stage}", style="cyan")
            text.append(f" [{store.status}] ")
            phase = store.starting_phase()
            if phase is not None:
                name, elapsed, detail = phase
                text.append(f"starting: {name}", style="bold yellow")
                text.append(f" {elapsed:.0f}s" + (f" ({detail})" if detail else ""), style="yellow")
            else:
                text.append(f"step {store.step:,}")
        text.append(f"  ⟳{self.current.refresh_ms}ms", style="dim")
        effective = self.effective_ms()
        if effective > self.current.refresh_ms:
            text.append(f" (actual {effective:.0f}ms)", style="yellow")
        header = self.query_one("#live-header", Static)
        if text != getattr(header, "_last_content", None):
            header._last_content = text  # type: ignore[attr-defined]
            header.update(text, layout=False)  # one fixed line: no layout pass

    # ------------------------------------------------------------ actions

    async def _show_current(self) -> None:
        """Rebuild the current screen's panels after an edit (add / edit / remove)."""
        had_focus = self.has_focus_within or self.app.focused is None
        await self.grid.show_screen(self.current)
        if had_focus and self.app.focused is None:
            self.focus()  # keep the pane's keys working after its panels were replaced
        self._after_switch()

    def _switch_to(self, index: int) -> None:
        """Show screen ``index``: a display toggle, no remount; redraws only that screen."""
        chart_builder().hold()  # paint the switch first, then build the charts
        old = self.grid
        old.styles.visibility = "hidden"
        self.screen_index = index % len(self.screens)
        self.grid.styles.visibility = "visible"
        if old.has_focus_within:
            self.focus()  # the focused panel is hidden now: keep the pane's keys working
        self._after_switch()

    def _after_switch(self) -> None:
        self._restart_timer()
        self._update_header()
        self.call_after_refresh(self._action_painted)
        # the switch paints first (the screen as it was last drawn); its panels catch up with the
        # store right after, so redrawing them never sits between the key and the repaint
        self.call_after_refresh(self._catch_up)

    def _catch_up(self) -> None:
        if self.grid.tick():  # only if this screen is behind the store
            self._update_header()

    def action_next_screen(self) -> None:
        self._switch_to(self.screen_index + 1)

    def action_prev_screen(self) -> None:
        self._switch_to(self.screen_index - 1)

    def _set_refresh(self, ms: int) -> None:
        chart_builder().hold()
        self.current.refresh_ms = max(50, min(60_000, ms))
        self._after_switch()  # the header's new rate paints first; the panels catch up right after
        self.notify(f"refresh every {self.current.refresh_ms} ms", timeout=2)

    def action_faster(self) -> None:
        self._set_refresh(self.current.refresh_ms // 2)

    def action_slower(self) -> None:
        self._set_refresh(self.current.refresh_ms * 2)

    def action_checkpoint(self) -> None:
        steer.checkpoint(self.app)

    def action_patch(self) -> None:
        steer.patch(self.app)

    def action_stop(self) -> None:
        steer.stop(self.app)

    def action_resume(self) -> None:
        steer.resume(self.app)

    def _focused_index(self) -> int | None:
        panels = self.grid.panels
        focused = self.app.focused
        for i, panel in enumerate(panels):
            if focused is panel or (focused is not None and panel in focused.ancestors):
                return i
        return len(panels) - 1 if panels else None

    def action_add_panel(self) -> None:
        from nanochat_tui.plugin_host import get_registry

        types = ", ".join(sorted(get_registry().panels))

        def check(text: str) -> str | None:
            try:
                parse_panel_text(text)
            except ConfigError as err:
                return str(err)
            return None

        async def done(text: str | None) -> None:
            if text:
                self.current.panels.append(parse_panel_text(text))
                await self._show_current()

        self.app.push_screen(
            PromptModal(
                f"Add a panel to '{self.current.name}'",
                help=f"type [key=value ...]  types: {types}\n"
                "keys: source title width height above below warn_above warn_below, other keys → options",
                placeholder="loss source=loss above=4 smoothing=0.9",
                validate=check,
            ),
            done,
        )

    def action_edit_panel(self) -> None:
        index = self._focused_index()
        if index is None:
            self.notify("no panel to edit; add one with a", severity="warning")
            return
        spec = self.current.panels[index]

        def check(text: str) -> str | None:
            try:
                parse_panel_text(text, spec)
            except ConfigError as err:
                return str(err)
            return None

        async def done(text: str | None) -> None:
            if text is not None:
                self.current.panels[index] = parse_panel_text(text, spec)
                await self._show_current()

        self.app.push_screen(
            PromptModal(
                f"Edit {spec.type} panel #{index + 1}",
                help="key=value ...  (source, title, width, height, above/below/warn_above/warn_below, options)",
                value=panel_text(spec),
                validate=check,
            ),
            done,
        )

    async def action_remove_panel(self) -> None:
        index = self._focused_index()
        if index is None:
            self.notify("this screen has no panels", severity="warning")
            return
        removed = self.current.panels.pop(index)
        await self._show_current()
        self.notify(f"removed {removed.type} panel (w saves the layout)", timeout=3)

    def ui_config(self) -> UIConfig:
        return UIConfig(screens=[s.model_copy(deep=True) for s in self.screens])

    def action_save_layout(self) -> None:
        state = getattr(self.app, "state", None)
        default = getattr(state, "prefab_name", "") or "my-layout"

        def check(text: str) -> str | None:
            if not text or not all(c.isalnum() or c in "-_." for c in text):
                return "prefab name may use only letters, digits, '-', '_' and '.'"
            return None

        self.app.push_screen(
            PromptModal(
                "Save live layout to prefab",
                help="the current config + this ui section",
                value=default,
                validate=check,
            ),
            self._save_named,
        )

    def _save_named(self, name: str | None) -> None:
        from nanochat_tui import paths

        if not name:
            return
        if (paths.user_prefabs_dir() / f"{name}.yaml").exists():
            from nanochat_tui.tui.screens.confirm import ConfirmScreen

            def answer(yes: bool | None) -> None:
                if yes:
                    self.save_layout(name, overwrite=True)

            self.app.push_screen(ConfirmScreen(f"Prefab '{name}' exists. Overwrite it?"), answer)
        else:
            self.save_layout(name)

    def save_layout(self, name: str, *, overwrite: bool = False) -> Path | None:
        """Write the current config with this layout as user prefab ``name``."""
        from nanochat_tui.config import save_prefab
        from nanochat_tui.config.schema import Config

        state = getattr(self.app, "state", None)
        config = state.config if state is not None else Config()
        try:
            path = save_prefab(
                config.model_copy(update={"ui": self.ui_config()}), name, overwrite=overwrite
            )
        except (ConfigError, FileExistsError, OSError) as err:
            self.notify(f"not saved: {err}", severity="error")
            return None
        self.notify(f"saved layout to {path}", timeout=4)
        return path

    def palette_commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        """Commands offered in the palette while the Live pane is active."""
        cmds: list[tuple[str, str, Callable[[], object]]] = [
            (
                "Live: next screen",
                "switch to the next declared live screen",
                self.action_next_screen,
            ),
            (
                "Live: previous screen",
                "switch to the previous live screen",
                self.action_prev_screen,
            ),
            ("Live: add panel", "add a panel to this screen", self.action_add_panel),
            (
                "Live: edit focused panel",
                "change source / thresholds / options",
                self.action_edit_panel,
            ),
            ("Live: remove focused panel", "remove the focused panel", self.action_remove_panel),
            ("Live: refresh faster", "halve refresh_ms", self.action_faster),
            ("Live: refresh slower", "double refresh_ms", self.action_slower),
            (
                "Live: save layout to prefab",
                "write the ui section to a user prefab",
                self.action_save_layout,
            ),
        ]
        for ms in (100, 250, 500, 1000, 2000):
            cmds.append(
                (
                    f"Live: refresh every {ms} ms",
                    "set this screen's refresh rate",
                    lambda ms=ms: self._set_refresh(ms),
                )
            )
        for i, s in enumerate(self.screens):
            cmds.append(
                (f"Live: show screen '{s.name}'", "switch live screen", lambda i=i: self._goto(i))
            )
        return cmds

    def _goto(self, index: int) -> None:
        self._switch_to(index)
