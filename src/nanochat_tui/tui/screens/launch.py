"""Launch screen: train the current config on a cloud as a SkyPilot managed job.

Opened from the palette ("Launch on a cloud…") or the Config pane (ctrl+l) with the config being
edited. Fields: cloud, accelerator, nodes, region, bucket, spot. As they change, a worker thread
rebuilds the plan through orchestrator/launch.py, the same functions ``nanochat-tui launch``
uses: the cost and time table (``cost_table``, prices from SkyPilot's catalog) and what will run
(``task_summary`` of the built ``Task``). Launch asks for confirmation, then submits in a worker
thread and streams the job's status lines. Missing credentials, no quota and no capacity each
show as one message with what to do. SkyPilot (the ``cloud`` extra) is imported only in those
workers; without it the screen says how to install it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, RichLog, Select, Static
from textual.worker import get_current_worker

from nanochat_tui import paths
from nanochat_tui.errors import UserError
from nanochat_tui.orchestrator import launch
from nanochat_tui.tui.worker_errors import ReportsWorkerErrors

# SkyPilot's names for the clouds a user is most likely to have credentials for
CLOUDS = ("aws", "gcp", "azure", "lambda", "runpod", "kubernetes")


@dataclass(frozen=True)
class Plan:
    """One build of the plan: the spec, its cost estimate and the built task (or why not)."""

    spec: launch.LaunchSpec
    estimate: launch.CostEstimate | None = None
    task: Any = None
    summary: tuple[tuple[str, str], ...] = ()
    error: UserError | None = None


def cost_renderable(estimate: launch.CostEstimate) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False, expand=False)
    table.add_column(style="dim", no_wrap=True)
    table.add_column()
    for row in estimate.rows:
        style = "bold" if row.label in ("est. time", "est. cost") else ""
        table.add_row(row.label, Text(row.value, style=style))
    return table


def summary_renderable(summary: tuple[tuple[str, str], ...]) -> Text:
    text = Text()
    for heading, body in summary:
        text.append(f"{heading}\n", "bold")
        for line in body.splitlines() or [""]:
            text.append(f"  {display_path_in(line)}\n")
    return text


def display_path_in(line: str) -> str:
    """``line`` with local paths under the app home or the user's home shortened."""
    home = paths.home_override()
    if home is not None:
        line = line.replace(str(home), "$NANOCHAT_TUI_HOME")
    return line.replace(str(Path.home()) + "/", "~/")


class StatusLines:
    """A file-like ``output_stream`` for SkyPilot: each complete line goes to ``emit``."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.pending = ""

    def write(self, data: str) -> int:
        self.pending += data
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.emit(line.rstrip("\r"))
        return len(data)

    def flush(self) -> None:
        if self.pending:
            self.emit(self.pending)
            self.pending = ""


class LaunchScreen(ReportsWorkerErrors, ModalScreen[None]):
    """Fields, the live cost/time table, the task summary, Launch, and the job's status lines."""

    DEFAULT_CSS = """
    LaunchScreen { align: center middle; }
    LaunchScreen > Vertical {
        width: 140; max-width: 100%; height: 44; max-height: 100%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    LaunchScreen .launch-row { height: 1; }
    LaunchScreen Label { width: auto; padding: 0 1 0 0; color: $text-muted; }
    LaunchScreen Select { width: 16; margin-right: 2; }
    LaunchScreen Input { width: 1fr; margin-right: 2; }
    LaunchScreen #launch-nodes { width: 6; }
    LaunchScreen Checkbox { width: auto; border: none; padding: 0; height: 1; }
    LaunchScreen #launch-message { height: auto; max-height: 4; margin-top: 1; }
    LaunchScreen #launch-message.-error { color: $error; }
    LaunchScreen #launch-plan { height: 1fr; min-height: 5; }
    LaunchScreen #launch-cost-box {
        width: 47; border: round $primary; padding: 0 1; height: 100%;
    }
    LaunchScreen #launch-task-box { width: 1fr; border: round $primary; padding: 0 1; }
    LaunchScreen #launch-actions { height: 1; }
    LaunchScreen #launch-go { margin-right: 2; }
    LaunchScreen #launch-log { height: 5; border: round $primary; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close the Launch screen", id="launch.close"),
    ]

    def __init__(
        self,
        config: Any,
        prefab: str,
        *,
        name: str | None = None,
        workdir: str | None = None,
        price_lookup: Callable[[str, launch.Accelerator, bool, str], float] | None = None,
        submit: Callable[[Any, str], Any] | None = None,
        follow: Callable[[str, Any], int] | None = None,
        enabled: Callable[[], list[str] | None] = launch.enabled_clouds,
    ) -> None:
        """``price_lookup``, ``submit``, ``follow`` and ``enabled`` default to SkyPilot's
        catalog, ``sky.jobs.launch``, ``launch.stream_status`` and the enabled clouds its API
        server reports (tests feed a local price table)."""
        super().__init__()
        self.config = config
        self.prefab = prefab
        self.job_name = name or f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.workdir = workdir
        self.price_lookup = price_lookup
        self.submit = submit
        self.follow = follow
        self.enabled = enabled
        self.plan: Plan | None = None
        self.launched = False
        self.builds = 0  # finished plan builds (tests wait on it)
        self.ready = False  # fields report their first values while the screen composes

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"Launch '{self.prefab}' as {self.job_name} (SkyPilot) — esc closes"
            with Horizontal(classes="launch-row"):
                yield Label("cloud")
                yield Select(
                    [(c, c) for c in CLOUDS],
                    value="aws",
                    allow_blank=False,
                    compact=True,
                    id="launch-cloud",
                )
                yield Label("accelerator")
                yield Input("H100:8", id="launch-accelerator", compact=True)
                yield Label("nodes")
                yield Input("1", id="launch-nodes", type="integer", compact=True)
                yield Checkbox("spot", id="launch-spot", compact=True)
            with Horizontal(classes="launch-row"):
                yield Label("region")
                yield Input(placeholder="any", id="launch-region", compact=True)
                yield Label("bucket")
                yield Input(
                    placeholder=f"nanochat-{self.job_name}".lower(),
                    id="launch-bucket",
                    compact=True,
                )
            message = Static("", id="launch-message")
            message.display = False  # shown when something needs the user's attention
            yield message
            with Horizontal(id="launch-plan"):
                with VerticalScroll(id="launch-cost-box") as cost:
                    cost.border_title = "Cost and time"
                    yield Static(Text("estimating…", "dim"), id="launch-cost")
                with VerticalScroll(id="launch-task-box") as task:
                    task.border_title = "What will run (the built SkyPilot Task)"
                    yield Static(Text("building…", "dim"), id="launch-task")
            with Horizontal(id="launch-actions"):
                yield Button(
                    "Launch", id="launch-go", variant="primary", compact=True, disabled=True
                )
                yield Static(Text("asks before submitting", "dim"), id="launch-hint")
            log = RichLog(id="launch-log", wrap=True, markup=False, max_lines=500)
            log.border_title = "Status"
            yield log

    def on_mount(self) -> None:
        self.call_after_refresh(self.start_planning)

    def start_planning(self) -> None:
        """After the first layout (every field is mounted): the first plan build."""
        self.ready = True
        self.rebuild()

    def action_close(self) -> None:
        self.dismiss(None)

    # ------------------------------------------------------------ the plan

    def spec(self) -> launch.LaunchSpec:
        """The LaunchSpec the fields describe (nodes falls back to 1 while being typed)."""
        nodes = self.query_one("#launch-nodes", Input).value.strip()
        return launch.LaunchSpec(
            prefab=self.prefab,
            cloud=str(self.query_one("#launch-cloud", Select).value),
            accelerator=self.query_one("#launch-accelerator", Input).value.strip(),
            spot=self.query_one("#launch-spot", Checkbox).value,
            nodes=int(nodes) if nodes.isdigit() and int(nodes) > 0 else 1,
            name=self.job_name,
            bucket=self.query_one("#launch-bucket", Input).value.strip(),
            region=self.query_one("#launch-region", Input).value.strip(),
        )

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def field_changed(self, event: Any) -> None:
        event.stop()
        if self.ready and not self.launched:
            self.rebuild()

    def rebuild(self) -> None:
        self.query_one("#launch-go", Button).disabled = True
        self._build_plan(self.spec())

    @work(
        thread=True,
        exclusive=True,
        name="Planning the launch",
        group="launch-plan",
        exit_on_error=False,
    )
    def _build_plan(self, spec: launch.LaunchSpec) -> None:
        """Worker: SkyPilot's import, the catalog lookup and the Task build all take time."""
        plan = self.make_plan(spec)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self.show_plan, plan)

    def make_plan(self, spec: launch.LaunchSpec) -> Plan:
        """Cost estimate and Task for ``spec``; the first UserError on the way ends the plan."""
        from nanochat_tui.config.loader import to_yaml
        from nanochat_tui.rundir import write_atomic

        try:
            launch.require_sky()
            lookup = self.price_lookup or launch.catalog_price
            estimate = launch.cost_table(self.config, spec, lookup)
            folder = paths.data_dir() / "launches" / spec.name
            folder.mkdir(parents=True, exist_ok=True)
            config_path = folder / "config.yaml"
            if not config_path.exists():
                write_atomic(config_path, to_yaml(self.config))
            workdir = self.workdir or launch.project_root(launch.__file__)
            task = launch.build_task(spec, str(config_path), workdir)
        except UserError as err:
            return Plan(spec, error=err)
        except Exception as err:  # SkyPilot refusing a value it validates itself (a region, ...)
            first = str(err).splitlines()[0][:200] if str(err) else ""
            return Plan(
                spec,
                error=UserError(
                    f"cannot plan this launch: {type(err).__name__}: {first}",
                    "check the cloud, accelerator and region fields (`sky show-gpus` lists them)",
                ),
            )
        return Plan(spec, estimate, task, tuple(launch.task_summary(task)))

    def show_plan(self, plan: Plan) -> None:
        self.plan = plan
        self.builds += 1
        cost = self.query_one("#launch-cost", Static)
        task = self.query_one("#launch-task", Static)
        if plan.error is not None:
            self.show_message(plan.error)
            cost.update(Text("—", "dim"))
            task.update(Text("—", "dim"))
        else:
            self.show_message(None)
            assert plan.estimate is not None
            cost.update(cost_renderable(plan.estimate))
            task.update(summary_renderable(plan.summary))
        self.query_one("#launch-go", Button).disabled = plan.error is not None or self.launched

    def show_message(self, error: UserError | None) -> None:
        """One message for what is wrong and what to do (empty when the plan is fine)."""
        message = self.query_one("#launch-message", Static)
        message.set_class(error is not None, "-error")
        message.display = error is not None
        if error is None:
            message.update("")
            return
        text = Text(error.message, "bold")
        if error.remediation:
            text.append(f"\n→ {error.remediation}", "")
        message.update(text)

    # ------------------------------------------------------------ launch

    @on(Button.Pressed, "#launch-go")
    def launch_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        plan = self.plan
        if plan is None or plan.error is not None or plan.estimate is None or self.launched:
            return
        from nanochat_tui.tui.screens.confirm import ConfirmScreen

        est = plan.estimate
        question = (
            f"Launch {plan.spec.name}: {plan.spec.nodes}× {plan.spec.accelerator} on "
            f"{plan.spec.cloud}{' (spot)' if plan.spec.spot else ''}, "
            f"~{est.hours:.2f} h, ~${est.cost:,.2f}?"
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.start_launch(plan)

        self.app.push_screen(ConfirmScreen(question, yes="Launch"), answered)

    def start_launch(self, plan: Plan) -> None:
        self.launched = True
        self.query_one("#launch-go", Button).disabled = True
        for field in self.query("Input, Select, Checkbox"):
            field.disabled = True
        self.status_line(f"submitting managed job {plan.spec.name} …")
        self._launch(plan)

    @work(
        thread=True,
        exclusive=True,
        name="Launching the job",
        group="launch-submit",
        exit_on_error=False,
    )
    def _launch(self, plan: Plan) -> None:
        """Worker: submit, then follow the job's status and logs until it ends."""

        def emit(line: str) -> None:
            self.app.call_from_thread(self.status_line, line)

        try:
            job = launch.launch(plan.spec, plan.task, submit=self.submit, enabled=self.enabled)
            emit(f"managed job {plan.spec.name} submitted: {job}")
            emit(
                f"logs: sky jobs logs {plan.spec.name} · cancel: sky jobs cancel -n {plan.spec.name}"
            )
            out = StatusLines(emit)
            code = (self.follow or launch.stream_status)(plan.spec.name, out)
            out.flush()
            emit(f"job {plan.spec.name} ended (exit code {code})")
        except UserError as err:
            self.app.call_from_thread(self.launch_failed, err)
        except Exception as err:  # anything SkyPilot raises that is not a known cloud failure
            self.app.call_from_thread(
                self.launch_failed,
                UserError(
                    f"launch failed: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}",
                    "see `sky jobs queue` and the app log (ctrl+d)",
                ),
            )

    def status_line(self, line: str) -> None:
        self.query_one("#launch-log", RichLog).write(line)

    def launch_failed(self, err: UserError) -> None:
        """Show the failure and let the user change the fields and try again."""
        self.show_message(err)
        self.status_line(f"not launched: {err.message}")
        self.launched = False
        for field in self.query("Input, Select, Checkbox"):
            field.disabled = False
        self.query_one("#launch-go", Button).disabled = (
            self.plan is None or self.plan.error is not None
        )
