"""Review screen: generated pairs side by side — prompt, rejected answer, critique, chosen
revision — and a decision per row before training (docs/alignment.md, "Review").

Keys (on the table): ``a`` accept, ``r`` reject, ``e`` edit the chosen revision (ctrl+s saves,
esc cancels), ``A`` accept every pending row, esc closes. Decisions are appended to the set's
``review.jsonl`` and the training datasets are rewritten atomically with only accepted and edited
rows (align/synth_store.py).
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Select, Static, TextArea

from nanochat_tui.align import synth_store as store
from nanochat_tui.errors import UserError

STATUS_STYLE = {"pending": "dim", "accepted": "green", "rejected": "red", "edited": "cyan"}


def _excerpt(text: str, width: int = 70) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


class ReviewScreen(Screen[None]):
    """The rows of one synthetic set, a detail view of the highlighted one, and its decision."""

    DEFAULT_CSS = """
    ReviewScreen { layout: vertical; }
    ReviewScreen #rev-top { height: auto; }
    ReviewScreen #rev-set { width: 50; }
    ReviewScreen #rev-counts { padding: 0 2; width: 1fr; }
    ReviewScreen #rev-table { height: 1fr; min-height: 5; }
    ReviewScreen #rev-prompt { height: auto; max-height: 4; padding: 0 1; }
    ReviewScreen #rev-sides { height: 2fr; }
    ReviewScreen .side { width: 1fr; border: round $panel; padding: 0 1; }
    ReviewScreen #rev-editor { width: 1fr; display: none; }
    ReviewScreen.editing #rev-editor { display: block; }
    ReviewScreen.editing #rev-chosen-box { display: none; }
    ReviewScreen #rev-help { height: 1; color: $text-muted; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "decide('accepted')", "Accept the row", id="review.accept"),
        Binding("r", "decide('rejected')", "Reject the row", id="review.reject"),
        Binding("e", "edit", "Edit the chosen revision", id="review.edit"),
        Binding("A", "accept_pending", "Accept every pending row", id="review.accept_all"),
        Binding("ctrl+s", "save_edit", "Save the edit", id="review.save", show=False),
        Binding("escape", "close", "Close (or cancel the edit)", id="review.close"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sets = store.list_sets()
        self.current: store.SetPaths | None = self._newest(self.sets)
        self.rows: list[store.ReviewRow] = []

    @staticmethod
    def _newest(sets: list[store.SetPaths]) -> store.SetPaths | None:
        return max(sets, key=lambda s: s.trace.stat().st_mtime) if sets else None

    def compose(self) -> ComposeResult:
        options = [(f"{s.project} / {s.name}", i) for i, s in enumerate(self.sets)]
        start = self.sets.index(self.current) if self.current else Select.BLANK
        with Horizontal(id="rev-top"):
            yield Select(options, value=start, id="rev-set", prompt="no synthetic sets yet")
            yield Static("", id="rev-counts")
        yield DataTable(id="rev-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="rev-prompt")
        with Horizontal(id="rev-sides"):
            with VerticalScroll(classes="side") as left:
                left.border_title = "rejected: first answer"
                yield Static("", id="rev-answer")
            with VerticalScroll(classes="side") as mid:
                mid.border_title = "critique"
                yield Static("", id="rev-critique")
            with VerticalScroll(classes="side", id="rev-chosen-box") as right:
                right.border_title = "chosen: revision"
                yield Static("", id="rev-chosen")
            with Vertical(id="rev-editor"):
                yield TextArea(id="rev-edit-area")
        yield Static(
            "a accept · r reject · e edit (ctrl+s save, esc cancel) · A accept all pending · "
            "esc close",
            id="rev-help",
        )

    def on_mount(self) -> None:
        table = self.query_one("#rev-table", DataTable)
        table.add_columns("review", "principle", "prompt")
        self.reload()
        table.focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, int):
            self.current = self.sets[event.value]
            self.reload()

    def reload(self, keep: int | None = None) -> None:
        """Re-read the set's logs and refill the table (cursor on row ``keep``)."""
        table = self.query_one("#rev-table", DataTable)
        try:
            self.rows = store.review_rows(self.current) if self.current else []
        except UserError as err:
            self.rows = []
            self.notify(str(err), severity="error", timeout=8)
        table.clear()
        for row in self.rows:
            table.add_row(
                Text(row.review, STATUS_STYLE[row.review]), row.principle, _excerpt(row.prompt)
            )
        if self.rows:
            table.move_cursor(row=min(keep or 0, len(self.rows) - 1))
        counts = {s: sum(r.review == s for r in self.rows) for s in store.REVIEW_STATUSES}
        self.query_one("#rev-counts", Static).update(
            " · ".join(f"{n} {s}" for s, n in counts.items())
            if self.current
            else "generate a set first (palette → Generate synthetic data)"
        )
        self.show_detail()

    def selected(self) -> store.ReviewRow | None:
        table = self.query_one("#rev-table", DataTable)
        if not self.rows or table.cursor_row is None or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def show_detail(self) -> None:
        row = self.selected()
        texts = ("", "", "", "") if row is None else (
            row.prompt, row.answer, row.critique, row.chosen
        )  # fmt: skip
        prompt = Text.assemble(("prompt: ", "bold"), texts[0]) if row else Text("")
        if row is not None:
            prompt.append(f"   [{row.review} · principle: {row.principle}]", "dim")
        self.query_one("#rev-prompt", Static).update(prompt)
        for widget_id, text in zip(
            ("rev-answer", "rev-critique", "rev-chosen"), texts[1:], strict=True
        ):
            self.query_one(f"#{widget_id}", Static).update(Text(text))

    @property
    def editing(self) -> bool:
        return self.has_class("editing")

    def _decide(self, ids: list[str], status: str, chosen: str | None = None) -> None:
        if self.current is None or not ids:
            return
        keep = self.query_one("#rev-table", DataTable).cursor_row
        try:
            store.decide(self.current, ids, status, chosen)
        except UserError as err:
            self.notify(str(err), severity="error", timeout=6)
            return
        self.reload(keep=keep + 1 if len(ids) == 1 and status != "edited" else keep)

    def action_decide(self, status: str) -> None:
        row = self.selected()
        if row is not None and not self.editing:
            self._decide([row.id], status)

    def action_accept_pending(self) -> None:
        if not self.editing:
            self._decide([r.id for r in self.rows if r.review == "pending"], "accepted")

    def action_edit(self) -> None:
        row = self.selected()
        if row is None or self.editing:
            return
        area = self.query_one("#rev-edit-area", TextArea)
        area.text = row.chosen
        self.add_class("editing")
        area.focus()

    def action_save_edit(self) -> None:
        row = self.selected()
        if not self.editing or row is None:
            return
        text = self.query_one("#rev-edit-area", TextArea).text
        self.remove_class("editing")
        self.query_one("#rev-table", DataTable).focus()
        self._decide([row.id], "edited", text)

    def action_close(self) -> None:
        if self.editing:
            self.remove_class("editing")
            self.query_one("#rev-table", DataTable).focus()
            return
        self.app.pop_screen()
