"""Compare pane (key 8): overlay several runs' metrics and see how their configs differ.

Pick runs with space in the list (every run under the runs dir); the chart overlays the chosen
metric against step, tokens seen or wall time; below it, the config keys whose values differ.
Everything comes from the local run directories (orchestrator/compare.py), read in a thread.

Keys: space pick/unpick run · m / M next/previous metric · x next x axis · e export the shown
series (CSV, or JSON for a .json path) · r re-read the runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import SelectionList, Static

from nanochat_tui.errors import UserError
from nanochat_tui.orchestrator.compare import AXES, AXIS_LABELS, RunSeries
from nanochat_tui.panels.chart import ChartView
from nanochat_tui.tui.screens.prompt import PromptModal
from nanochat_tui.tui.worker_errors import ReportsWorkerErrors

DIFF_ROWS = 5  # config-diff lines shown under the chart (the rest are counted)


def _short(value: Any, width: int = 14) -> str:
    text = "—" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


class ComparePane(ReportsWorkerErrors, Widget):
    """Runs picked in the list, overlaid on one chart, with their config differences."""

    DEFAULT_CSS = """
    ComparePane { layout: vertical; height: 1fr; }
    ComparePane > #compare-header { height: 1; background: $boost; padding: 0 1; }
    ComparePane > Horizontal { height: 1fr; }
    ComparePane #compare-runs { width: 26; height: 1fr; border: round $primary-darken-2; }
    ComparePane #compare-runs:focus { border: round $accent; }
    ComparePane #compare-right { width: 1fr; height: 1fr; }
    ComparePane #compare-chart { height: 1fr; }
    ComparePane #compare-diff { height: auto; max-height: 7; padding: 0 1; }
    ComparePane > #compare-hint { height: 1; color: $text-muted; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("m", "next_metric", "Next metric", id="compare.next_metric"),
        Binding("M", "prev_metric", "Previous metric", id="compare.prev_metric"),
        Binding("x", "next_axis", "Next x axis (step, tokens, wall time)", id="compare.axis"),
        Binding("e", "export", "Export the shown series (CSV/JSON)", id="compare.export"),
        Binding("r", "refresh_runs", "Re-read the runs", id="compare.refresh"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.series: dict[str, RunSeries] = {}  # run dir -> loaded series (picked runs)
        self.metric = "loss"
        self.axis = "step"
        self.diff: list[tuple[str, list[Any]]] = []
        self.loads = 0  # completed loads (tests wait on it)

    def compose(self) -> ComposeResult:
        yield Static("", id="compare-header")
        with Horizontal():
            runs: SelectionList[str] = SelectionList(id="compare-runs")
            runs.border_title = "runs (space)"
            yield runs
            with Vertical(id="compare-right"):
                yield ChartView(id="compare-chart")
                yield Static("", id="compare-diff")
        yield Static(
            Text("space pick · m/M metric · x axis · e export · r refresh"), id="compare-hint"
        )

    def on_mount(self) -> None:
        self._update_header()
        self._list_runs()

    def initial_focus(self) -> Widget:
        return self.query_one("#compare-runs", SelectionList)

    @property
    def picked(self) -> list[str]:
        return list(self.query_one("#compare-runs", SelectionList).selected)

    @property
    def runs(self) -> list[RunSeries]:
        return [self.series[d] for d in self.picked if d in self.series]

    # ------------------------------------------------------------ loading

    @work(
        thread=True,
        name="Listing runs to compare",
        group="compare-list",
        exclusive=True,
        exit_on_error=False,
    )
    def _list_runs(self) -> None:
        from nanochat_tui.orchestrator.summaries import list_runs

        summaries = list_runs()
        self.app.call_from_thread(self._fill, summaries)

    def _fill(self, summaries: list[Any]) -> None:
        listing = self.query_one("#compare-runs", SelectionList)
        picked = set(self.picked)
        listing.clear_options()
        for s in summaries:
            key = str(Path(s.run_dir).resolve())
            label = Text(s.name)
            label.append(f" {s.status}", style="dim")
            listing.add_option((label, key, key in picked))
        if listing.option_count and listing.highlighted is None:
            listing.highlighted = 0  # space works at once, on the newest run
        self._load()

    def pick(self, run_dirs: list[Path]) -> None:
        """Select these runs (by directory), as space in the list would."""
        listing = self.query_one("#compare-runs", SelectionList)
        for run_dir in run_dirs:
            listing.select(str(Path(run_dir).resolve()))

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        event.stop()
        self._load()

    @work(
        thread=True,
        name="Loading the compared runs",
        group="compare-load",
        exclusive=True,
        exit_on_error=False,
    )
    def _load(self) -> None:
        from nanochat_tui.orchestrator.compare import config_diff, load_series

        picked = self.picked
        cache = dict(self.series)
        series = {d: cache.get(d) or load_series(Path(d)) for d in picked}
        diff = config_diff([Path(d) for d in picked]) if len(picked) > 1 else []
        self.app.call_from_thread(self._loaded, picked, series, diff)

    def _loaded(
        self, picked: list[str], series: dict[str, RunSeries], diff: list[tuple[str, list[Any]]]
    ) -> None:
        self.series.update(series)  # a cache: unpicked runs stay loaded
        if picked != self.picked:
            return  # the selection changed meanwhile: a newer load follows
        self.diff = diff
        metrics = self.metrics()
        if metrics and self.metric not in metrics:
            self.metric = metrics[0]
        self.loads += 1
        self._draw()

    def action_refresh_runs(self) -> None:
        self.series = {}  # re-read every picked run (they may have grown)
        self._list_runs()

    # ------------------------------------------------------------ drawing

    def metrics(self) -> list[str]:
        from nanochat_tui.orchestrator.compare import common_metrics

        return common_metrics(self.runs)

    def _draw(self) -> None:
        lines = []
        for run in self.runs:
            xs, ys = run.xy(self.metric, self.axis)
            if xs:
                lines.append((xs, ys, run.name))
        self.query_one(ChartView).show(lines, ylabel=self.metric, xlabel=AXIS_LABELS[self.axis])
        self._update_header()
        self._show_diff()

    def _update_header(self) -> None:
        text = Text()
        text.append("metric ", style="dim")
        text.append(self.metric, style="bold cyan")
        text.append(" vs ", style="dim")
        text.append(AXIS_LABELS[self.axis], style="bold cyan")
        n = len(self.runs)
        text.append(f"  {n} run{'s' if n != 1 else ''} picked", style="dim" if n else "yellow")
        if not n:
            listed = self.query_one("#compare-runs", SelectionList).option_count
            hint = "space on a run to add it" if listed else "no runs yet: start one on Runs (4, n)"
            text.append(f" — {hint}", style="yellow")
        self.query_one("#compare-header", Static).update(text)

    def _show_diff(self) -> None:
        runs = self.runs
        text = Text(no_wrap=True, overflow="ellipsis")
        if len(runs) < 2:
            text.append("pick two or more runs to see how their configs differ", style="dim")
        elif not self.diff:
            text.append("configs: no differences", style="dim")
        else:
            text.append("config diff ", style="bold")
            text.append(" │ ".join(_short(r.name) for r in runs), style="dim")
            for key, values in self.diff[:DIFF_ROWS]:
                text.append(f"\n{key}: ", style="cyan")
                text.append(" │ ".join(_short(v) for v in values))
            if len(self.diff) > DIFF_ROWS:
                text.append(
                    f"\n… {len(self.diff) - DIFF_ROWS} more keys differ (e exports)", style="dim"
                )
        self.query_one("#compare-diff", Static).update(text)

    # ------------------------------------------------------------ actions

    def _step_metric(self, delta: int) -> None:
        metrics = self.metrics()
        if not metrics:
            self.notify("pick a run with metrics first (space)", severity="warning")
            return
        i = metrics.index(self.metric) if self.metric in metrics else -delta
        self.set_metric(metrics[(i + delta) % len(metrics)])

    def set_metric(self, metric: str) -> None:
        self.metric = metric
        self._draw()

    def action_next_metric(self) -> None:
        self._step_metric(1)

    def action_prev_metric(self) -> None:
        self._step_metric(-1)

    def action_next_axis(self) -> None:
        self.axis = AXES[(AXES.index(self.axis) + 1) % len(AXES)]
        self._draw()

    def action_export(self) -> None:
        if not self.runs:
            self.notify("pick runs to export first (space)", severity="warning")
            return
        from nanochat_tui import paths

        default = paths.data_dir() / "exports" / f"compare-{self.metric}-{self.axis}.csv"

        def done(text: str | None) -> None:
            if text:
                self.export(Path(text))

        self.app.push_screen(
            PromptModal(
                f"Export {self.metric} vs {AXIS_LABELS[self.axis]} of {len(self.runs)} runs",
                help="a path ending in .json writes JSON; anything else CSV (run, x, value)",
                value=str(default),
            ),
            done,
        )

    def export(self, path: Path) -> Path | None:
        from nanochat_tui.orchestrator.compare import export

        try:
            written = export(self.runs, self.metric, self.axis, path)
        except UserError as err:
            self.notify(str(err), severity="error", timeout=8)
            return None
        self.notify(f"exported to {written}", timeout=5)
        return written

    def palette_commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        cmds: list[tuple[str, str, Callable[[], object]]] = [
            ("Compare: next x axis", "step → tokens seen → wall time", self.action_next_axis),
            ("Compare: export series", "CSV or JSON of the shown metric", self.action_export),
            ("Compare: re-read runs", "list and reload the runs", self.action_refresh_runs),
        ]
        for metric in self.metrics():
            cmds.append(
                (
                    f"Compare: plot {metric}",
                    "overlay this metric",
                    lambda m=metric: self.set_metric(m),
                )
            )
        for axis in AXES:
            cmds.append(
                (
                    f"Compare: x axis {AXIS_LABELS[axis]}",
                    "plot against it",
                    lambda a=axis: self._set_axis(a),
                )
            )
        return cmds

    def _set_axis(self, axis: str) -> None:
        self.axis = axis
        self._draw()
