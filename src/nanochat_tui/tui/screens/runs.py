"""Runs pane (key 4): list runs, start one from the active config, attach, and steer the attached run.

Keys: n new run (type a name, enter) · m toggle thread/detached for new runs · enter/a attach to the
selected run (then the Live pane shows it) · c checkpoint now · p patch (key=value, validated) ·
s stop (asks first) · u resume the selected stopped/crashed run · g lineage of the selected run
(base → sft → dpo; its chain is also the line under the table) · r refresh the list. The list refreshes itself every few seconds in a thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable, Static
from textual.worker import get_current_worker

from nanochat_tui.config import ConfigError
from nanochat_tui.errors import UserError
from nanochat_tui.tui import init_from, steer
from nanochat_tui.tui.screens.prompt import PromptModal
from nanochat_tui.tui.worker_errors import ReportsWorkerErrors

REFRESH_S = 2.0
_STATUS_STYLE = {"running": "green", "finished": "cyan", "stopped": "yellow", "failed": "bold red"}


def _ago(t: float | None) -> str:
    if not t:
        return "—"
    return time.strftime("%m-%d %H:%M", time.localtime(t))


_COLUMNS = (("name", 26), ("status", 9), ("step", 8), ("mode", 9), ("started", 11), ("detail", 16))


class RunsPane(ReportsWorkerErrors, Widget, can_focus=False):
    """Runs under the runs dir + controls for ``app.state.run``."""

    DEFAULT_CSS = """
    RunsPane { layout: vertical; height: 1fr; }
    RunsPane > #runs-header { height: auto; padding: 0 1; background: $boost; }
    RunsPane > DataTable { height: 1fr; border-left: tall $panel; }
    RunsPane > DataTable:focus { border-left: tall $accent; }
    RunsPane > #runs-lineage { height: 1; padding: 0 1; }
    RunsPane > #runs-reason { height: auto; max-height: 2; padding: 0 1; color: $error; }
    RunsPane > #runs-hint { height: 1; color: $text-muted; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("n", "new_run", "Start a new run from the active config", id="runs.new"),
        Binding("m", "toggle_mode", "Toggle new-run mode thread/detached", id="runs.mode"),
        Binding("enter,a", "attach", "Attach to the selected run", id="runs.attach"),
        Binding("c", "checkpoint", "Checkpoint the attached run now", id="runs.checkpoint"),
        Binding("p", "patch", "Patch the attached run (key=value)", id="runs.patch"),
        Binding("s", "stop", "Stop the attached run", id="runs.stop"),
        Binding("u", "resume", "Resume the selected stopped/crashed run", id="runs.resume"),
        Binding("g", "lineage", "Lineage of the selected run", id="runs.lineage"),
        Binding("r", "refresh_runs", "Refresh the run list", id="runs.refresh"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = "thread"
        self.runs: list[Any] = []
        self.starting = False

    def compose(self) -> ComposeResult:
        yield Static("", id="runs-header")
        table: DataTable = DataTable(cursor_type="row", zebra_stripes=True, id="runs-table")
        # Fixed widths: rows arrive from a worker while the pane may be hidden, and auto-sized
        # columns then stay at their header width ("fi" for "finished").
        for label, width in _COLUMNS:
            table.add_column(label, width=width)
        yield table
        reason = Static("", id="runs-reason")
        reason.display = False
        yield reason
        yield Static("", id="runs-lineage")
        yield Static(
            Text("n new · m mode · ⏎ attach · c ckpt · p patch · s stop · u resume · g lineage"),
            id="runs-hint",
        )

    def on_mount(self) -> None:
        self._update_header()
        self._poll_runs()

    def initial_focus(self) -> Widget:
        return self.query_one(DataTable)

    @property
    def state(self) -> Any:
        return getattr(self.app, "state", None)

    @property
    def run(self) -> Any:
        return getattr(self.state, "run", None)

    # ------------------------------------------------------------ listing

    @work(thread=True, name="Listing runs", group="runs-poll", exclusive=True, exit_on_error=False)
    def _poll_runs(self) -> None:
        from nanochat_tui.orchestrator.summaries import list_runs

        worker = get_current_worker()
        first = True
        while not worker.is_cancelled:
            if not first and not self._visible():
                time.sleep(0.1)  # hidden pane: no listing (it would take CPU from a run)
                continue
            first = False
            try:
                runs = list_runs()
            except Exception as err:  # a broken run dir must not kill the poller
                runs = []
                self.app.call_from_thread(self.notify, f"cannot list runs: {err}", severity="error")
            if worker.is_cancelled:
                return
            self.app.call_from_thread(self._fill, runs)
            deadline = time.monotonic() + REFRESH_S
            while time.monotonic() < deadline and not worker.is_cancelled:
                time.sleep(0.05)

    def _visible(self) -> bool:
        """True while this pane is the displayed one (hidden panes sit in the app's switcher)."""
        try:
            return bool(self.display and self.is_attached and self.app.screen is self.screen)
        except Exception:  # not mounted / app closing
            return False

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_reason()
        self._show_lineage()

    def _show_reason(self) -> None:
        """Why the selected run failed, on the line under the table (empty otherwise)."""
        table = self.query_one(DataTable)
        row = table.cursor_row
        summary = self.runs[row] if self.runs and 0 <= row < len(self.runs) else None
        reason = getattr(summary, "reason", "") if summary is not None else ""
        text = f"failed: {reason}" if reason else ""
        if text != getattr(self, "_reason", ""):
            self._reason = text
            line = self.query_one("#runs-reason", Static)
            line.update(Text(text))
            line.display = bool(text)

    def _show_lineage(self) -> None:
        """The selected run's chain on the line under the table (a few small file reads)."""
        from nanochat_tui.orchestrator.lineage import chain_text, resolve

        selected = self._selected_dir()
        chain = chain_text(resolve(Path(selected))) if selected is not None else ""
        if chain == getattr(self, "_chain", ""):
            return  # unchanged: no repaint
        self._chain = chain
        text = Text("lineage ", style="dim", no_wrap=True, overflow="ellipsis") if chain else Text()
        text.append(chain)
        self.query_one("#runs-lineage", Static).update(text)

    def action_lineage(self) -> None:
        from nanochat_tui.orchestrator.lineage import resolve
        from nanochat_tui.tui.screens.lineage import LineageScreen

        selected = self._selected_dir()
        if selected is None:
            self.notify("no run selected", severity="warning")
            return
        self.app.push_screen(LineageScreen(resolve(Path(selected))))

    def action_refresh_runs(self) -> None:
        self._poll_runs()

    def _fill(self, runs: list[Any]) -> None:
        table = self.query_one(DataTable)
        selected = self._selected_dir()
        attached = str(Path(self.run.run_dir).resolve()) if self.run is not None else None
        rows = []
        for summary in runs:
            key = str(Path(summary.run_dir).resolve())
            rows.append(
                (
                    key,
                    ("▶ " if key == attached else "  ") + summary.name,
                    summary.status,
                    "—" if summary.step is None else f"{summary.step:,}",
                    summary.mode,
                    _ago(summary.started),
                    summary.detail or summary.reason or "",
                )
            )
        self.runs = runs
        if rows == getattr(self, "_rows", None) and table.row_count == len(rows):
            self._update_header()
            return  # nothing changed: no table rebuild, no repaint
        self._rows = rows
        table.clear()
        for key, name, status, step, mode, started, detail in rows:
            table.add_row(
                Text(name, style="bold" if key == attached else ""),
                Text(status, style=_STATUS_STYLE.get(status, "dim")),
                step,
                mode,
                started,
                detail,
                key=key,
            )
        if selected is not None:
            for i, summary in enumerate(runs):
                if str(Path(summary.run_dir).resolve()) == selected:
                    table.move_cursor(row=i)
                    break
        self._update_header()
        self._show_reason()
        self._show_lineage()

    def _selected_dir(self) -> str | None:
        table = self.query_one(DataTable)
        if not self.runs or table.row_count == 0:
            return None
        row = table.cursor_row
        if 0 <= row < len(self.runs):
            return str(Path(self.runs[row].run_dir).resolve())
        return None

    def _update_header(self) -> None:
        text = Text()
        text.append("new runs: ")
        text.append(self.mode, style="bold cyan")
        text.append(" (m toggles)   ")
        state = self.state
        if state is not None and getattr(state, "checkpoint", None) is not None:
            text.append(f"from {init_from.label(state.checkpoint)} (ckpt)   ", style="yellow")
        run = self.run
        if run is None:
            text.append("attached: none", style="dim")
        else:
            text.append("attached: ")
            text.append(f"{run.name} ({run.mode})", style="bold")
        if self.starting:
            text.append("   starting…", style="yellow")
        self.query_one("#runs-header", Static).update(text)

    # ------------------------------------------------------------ start + attach

    def action_toggle_mode(self) -> None:
        self.mode = "detached" if self.mode == "thread" else "thread"
        self._update_header()

    def action_new_run(self) -> None:
        if self.state is None:
            self.notify("no active config", severity="error")
            return
        from nanochat_tui.orchestrator.runner import default_run_name, name_problem

        config = self.state.config

        def check(name: str) -> str | None:  # shown in the dialog, which keeps the typed name
            return name_problem(config, name) if name else None

        def done(name: str | None) -> None:
            if name is not None:
                self.start(name or default_run_name(config))

        start_line = init_from.start_line(config, self.state.checkpoint)
        self.app.push_screen(
            PromptModal(
                f"New {self.mode} run from '{config.name}'",
                help=f"{start_line}\n"
                "run name (empty = a dated default); m on the Runs pane toggles thread/detached",
                placeholder=default_run_name(config),
                validate=check,
            ),
            done,
        )

    def start(self, name: str) -> None:
        """Start a run named ``name`` from app.state.config, from the loaded checkpoint when it
        fits (asks first when it does not: tui/init_from.py)."""

        def go(config: Any) -> None:
            self.starting = True
            self._update_header()
            self._start_worker(config, name, self.mode)

        init_from.choose_config(self.app, self.state.config, go, what=f"run '{name}'")

    def on_checkpoint_loaded(self, message: Any) -> None:
        """tui.messages.CheckpointLoaded: the header names what new runs start from."""
        if self.is_mounted:
            self._update_header()

    @work(thread=True, name="Starting the run", group="runs-start", exit_on_error=False)
    def _start_worker(self, config: Any, name: str, mode: str) -> None:
        from nanochat_tui.orchestrator.runner import start_run

        try:
            handle = start_run(config, name=name, mode=mode)
        except (UserError, ConfigError, OSError) as err:
            self.app.call_from_thread(self._start_failed, str(err))
            return
        self.app.call_from_thread(self._set_run, handle, True)

    def _start_failed(self, message: str) -> None:
        self.starting = False
        self._update_header()
        self.notify(message, title="run not started", severity="error", timeout=8)

    def _set_run(self, handle: Any, switch: bool) -> None:
        from nanochat_tui.tui.messages import RunChanged

        self.starting = False
        if self.state is not None:
            self.state.run = handle
        self.post_message(RunChanged(handle))
        self._update_header()
        self._poll_runs()
        if switch:
            self.app.call_later(self.app.run_action, "switch_pane('live')")

    def action_attach(self) -> None:
        selected = self._selected_dir()
        if selected is None:
            self.notify("no run selected", severity="warning")
            return
        self.attach(Path(selected))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row (the table handles enter itself) attaches to that run."""
        event.stop()
        self.action_attach()

    def attach(self, run_dir: Path) -> None:
        from nanochat_tui.orchestrator.runner import attach

        try:
            handle = attach(run_dir)
        except UserError as err:
            self.notify(str(err), severity="error")
            return
        self._set_run(handle, True)

    # ------------------------------------------------------------ controls (tui/steer.py)

    def action_checkpoint(self) -> None:
        steer.checkpoint(self.app)

    def action_patch(self) -> None:
        steer.patch(self.app)

    def action_stop(self) -> None:
        steer.stop(self.app)

    def action_resume(self) -> None:
        """Resume the selected run (stopped or crashed) from its latest checkpoint."""
        selected = self._selected_dir()
        if selected is None:
            self.notify("no run selected", severity="warning")
            return
        steer.resume(self.app, Path(selected), self.mode)

    def palette_commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        """Commands offered in the palette while the Runs pane is active."""
        return [
            (
                "Runs: new run",
                f"start a {self.mode} run from the active config",
                self.action_new_run,
            ),
            (
                "Runs: toggle thread/detached",
                "mode used by the next new run",
                self.action_toggle_mode,
            ),
            (
                "Runs: attach to selected",
                "show the selected run on the Live pane",
                self.action_attach,
            ),
            (
                "Runs: checkpoint now",
                "save a checkpoint of the attached run",
                self.action_checkpoint,
            ),
            ("Runs: patch attached run", "change a patchable config field live", self.action_patch),
            ("Runs: stop attached run", "checkpoint and stop (asks first)", self.action_stop),
            (
                "Runs: resume selected run",
                f"continue a stopped/crashed run from its checkpoint ({self.mode})",
                self.action_resume,
            ),
            (
                "Runs: lineage of selected run",
                "the runs it descends from, with SOUL versions and datasets",
                self.action_lineage,
            ),
            ("Runs: refresh list", "re-read the runs dir", self.action_refresh_runs),
        ]
