"""Datasets view (from the SOUL pane, key t): a project's JSONL datasets checked line by line.

Top: one row per dataset (rows, bad lines, length stats). Bottom left: the bad lines of the
highlighted dataset with the reason. Bottom right: one rendered conversation, supervised (mask 1)
text highlighted, special tokens dimmed; n/p step through the valid rows. Lengths are in the
tokens of a run's tokenizer when one is chosen (k; the attached run's by default), else in
characters of the rendered chat format — the header says which. Checking runs off the UI thread.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Static

from nanochat_tui import projects
from nanochat_tui.align.chat import ConversationError
from nanochat_tui.align.datasets import (
    DatasetReport,
    check_dataset,
    conversations_of,
    preview,
    read_row,
    run_max_len,
)
from nanochat_tui.errors import UserError

log = logging.getLogger("nanochat_tui.tui.datasets")


def segments_text(segments) -> Text:
    """Rendered conversation: supervised text on green, special tokens dim."""
    text = Text()
    for seg in segments:
        style = "dim" if seg.special else ""
        if seg.supervised:
            style = f"{style} bold black on green".strip()
        text.append(seg.text, style)
    return text


class DatasetsScreen(Screen[None]):
    """A project's datasets: counts, lengths, bad lines, a rendered preview (module docstring)."""

    DEFAULT_CSS = """
    DatasetsScreen { padding: 0 1; }
    DatasetsScreen #ds-header { height: auto; max-height: 2; }
    DatasetsScreen #ds-table { height: 2fr; min-height: 4; }
    DatasetsScreen #ds-bottom { height: 3fr; }
    DatasetsScreen #ds-issues { width: 1fr; }
    DatasetsScreen #ds-preview-box { width: 1fr; padding-left: 1; }
    DatasetsScreen .ds-title { text-style: bold; color: $accent; height: 1; }
    DatasetsScreen #ds-hint { height: 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Back to the SOUL pane", id="datasets.close"),
        Binding("n", "preview_step(1)", "Preview the next conversation", id="datasets.next"),
        Binding("p", "preview_step(-1)", "Preview the previous conversation", id="datasets.prev"),
        Binding("k", "tokenizer", "Count tokens with a run's tokenizer", id="datasets.tokenizer"),
        Binding("r", "recheck", "Check the datasets again", id="datasets.refresh"),
    ]

    def __init__(self, project: projects.Project, tokenizer_from: Path | None = None) -> None:
        super().__init__()
        self.project = project
        self.tokenizer_from = tokenizer_from  # a run dir or tokenizer.json
        self.tokenizer: Any = None
        self.max_len: int | None = None
        self.reports: dict[str, DatasetReport] = {}
        self.valid_lines: dict[str, list[int]] = {}
        self.preview_index = 0
        self.preview_text = Text()  # the conversation shown (its styles mark the supervised part)

    def compose(self) -> ComposeResult:
        yield Static("", id="ds-header")
        yield DataTable(id="ds-table", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="ds-bottom"):
            with Vertical(id="ds-issues"):
                yield Static("Bad lines", classes="ds-title")
                yield DataTable(id="ds-issue-table", cursor_type="row")
            with Vertical(id="ds-preview-box"):
                yield Static("Preview", classes="ds-title", id="ds-preview-title")
                with VerticalScroll(id="ds-preview-scroll"):
                    yield Static("", id="ds-preview")
        yield Static(
            "n/p next/previous conversation · k tokenizer · r re-check · esc back", id="ds-hint"
        )

    def on_mount(self) -> None:
        self.query_one("#ds-table", DataTable).add_columns(
            "dataset", "rows", "bad", "min", "median", "p95", "max"
        )
        self.query_one("#ds-issue-table", DataTable).add_columns("line", "problem")
        if self.tokenizer_from is None:
            self.tokenizer_from = self._attached_run()
        self.query_one("#ds-table", DataTable).focus()
        self.check()

    def _attached_run(self) -> Path | None:
        run = getattr(getattr(self.app, "state", None), "run", None)
        run_dir = getattr(run, "run_dir", None)
        if run_dir is not None and (Path(run_dir) / "tokenizer.json").is_file():
            return Path(run_dir)
        return None

    def unit_label(self) -> str:
        if self.tokenizer is not None:
            return f"lengths in tokens (tokenizer of {self.tokenizer_from})"
        return "lengths in characters of the rendered chat format (no tokenizer: k picks a run's)"

    @work(thread=True, exclusive=True, group="datasets-check")
    def check(self) -> None:
        """Load the tokenizer (if any) and check every dataset, off the UI thread."""
        tokenizer, max_len, problem = None, None, None
        if self.tokenizer_from is not None:
            try:
                from nanochat_tui.jax_engine.tokenizer import Tokenizer  # tokenizers only, no JAX

                tokenizer = Tokenizer.load(self.tokenizer_from)
                if Path(self.tokenizer_from).is_dir():
                    max_len = run_max_len(self.tokenizer_from)
            except UserError as err:
                problem = str(err)
        reports = {}
        for path in self.project.datasets():
            try:
                reports[path.stem] = check_dataset(path, tokenizer, max_len)
            except UserError as err:
                problem = str(err)
        self.app.call_from_thread(self.show, reports, tokenizer, max_len, problem)

    def show(
        self,
        reports: dict[str, DatasetReport],
        tokenizer: Any,
        max_len: int | None,
        problem: str | None,
    ) -> None:
        self.reports, self.tokenizer, self.max_len = reports, tokenizer, max_len
        if problem:
            self.notify(problem, severity="error", timeout=8)
        limit = f"; rows over {max_len} flagged" if max_len else ""
        header = Text.assemble(
            ("Datasets of project ", "dim"), (self.project.name, "bold"),
            (f"  {self.unit_label()}{limit}", "dim"),
        )  # fmt: skip
        if not reports:
            header.append(
                f"\nno datasets: add JSONL files to {self.project.datasets_dir}", "yellow"
            )
        self.query_one("#ds-header", Static).update(header)
        table = self.query_one("#ds-table", DataTable)
        table.clear()
        for name, report in reports.items():
            stats = report.stats()
            cells = (
                ("—",) * 4
                if stats is None
                else (str(stats.min), f"{stats.median:g}", str(stats.p95), str(stats.max))
            )
            bad = Text(str(report.issue_count), "red" if report.issue_count else "green")
            table.add_row(name, str(report.rows), bad, *cells, key=name)
        self.valid_lines = {}
        self.show_dataset()

    def current(self) -> DatasetReport | None:
        table = self.query_one("#ds-table", DataTable)
        if table.row_count == 0:
            return None
        name = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return self.reports.get(str(name))

    @on(DataTable.RowHighlighted, "#ds-table")
    def dataset_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.preview_index = 0
        self.show_dataset()

    def show_dataset(self) -> None:
        report = self.current()
        issues = self.query_one("#ds-issue-table", DataTable)
        issues.clear()
        if report is None:
            self.query_one("#ds-preview", Static).update("")
            return
        for issue in report.issues:
            issues.add_row(str(issue.line), issue.message)
        if report.issue_count > len(report.issues):
            issues.add_row("…", f"{report.issue_count - len(report.issues)} more")
        self.show_preview()

    def _valid_lines(self, report: DatasetReport) -> list[int]:
        """Line numbers of the usable rows (every non-blank line without an issue)."""
        key = str(report.path)
        if key not in self.valid_lines:
            bad = {i.line for i in report.issues}
            lines = []
            with report.path.open(encoding="utf-8") as fh:
                for n, text in enumerate(fh, start=1):
                    if text.strip() and n not in bad:
                        lines.append(n)
            self.valid_lines[key] = lines
        return self.valid_lines[key]

    def show_preview(self) -> None:
        report = self.current()
        title = self.query_one("#ds-preview-title", Static)
        body = self.query_one("#ds-preview", Static)
        if report is None or report.rows == 0:
            title.update("Preview")
            body.update(Text("no valid conversation to preview", "dim"))
            return
        lines = self._valid_lines(report)
        self.preview_index %= len(lines)
        line = lines[self.preview_index]
        try:
            obj = read_row(report.path, line)
            sides = conversations_of(obj)
        except (UserError, ConversationError) as err:
            body.update(Text(str(err), "red"))
            return
        text = Text()
        for label, turns in zip(("chosen", "rejected"), sides, strict=False):
            if len(sides) > 1:
                text.append(f"{label}:\n", "bold")
            text.append_text(segments_text(preview(turns, self.tokenizer)))
            text.append("\n")
        title.update(
            Text.assemble(
                (f"Preview: line {line} ({self.preview_index + 1}/{len(lines)})  ", "bold"),
                ("supervised", "bold black on green"),
                (" = in the loss", "dim"),
            )
        )
        self.preview_text = text
        body.update(text)

    def action_preview_step(self, delta: int) -> None:
        self.preview_index += delta
        self.show_preview()

    def action_tokenizer(self) -> None:
        from nanochat_tui.tui.screens.prompt import PromptModal

        def check(text: str) -> str | None:
            if not text:
                return None
            path = Path(text).expanduser()
            if path.is_dir() and not (path / "tokenizer.json").is_file():
                return f"{path} has no tokenizer.json"
            if not path.exists():
                return f"{path} does not exist"
            return None

        def chosen(text: str | None) -> None:
            if text is None:
                return
            self.tokenizer_from = Path(text).expanduser() if text else None
            self.check()

        self.app.push_screen(
            PromptModal(
                "Tokenizer for lengths",
                help="A run directory (its tokenizer.json and sequence_len) or a tokenizer.json; "
                "empty = count characters.",
                value=str(self.tokenizer_from or ""),
                validate=check,
            ),
            chosen,
        )

    def action_recheck(self) -> None:
        self.check()

    def action_close(self) -> None:
        self.dismiss(None)
