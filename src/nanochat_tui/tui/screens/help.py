"""Help screen: generated from the same key table as the palette (tui/keymap.py)."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from nanochat_tui.tui.keymap import KeySpec, display_key

INTRO = (
    "nanochat-tui — configure, train, watch, steer, evaluate and chat with a small nanochat LLM.\n"
    "Keys are remappable by id in {keymap}. ctrl+p opens the command palette."
)


def key_table(rows: list[tuple[KeySpec, str]]) -> Table:
    """A compact table of (spec, effective key), one titled group per scope (global, each pane)."""
    table = Table(box=None, expand=True, pad_edge=False, show_header=True, header_style="bold")
    table.add_column("key", style="bold cyan", no_wrap=True, width=10)
    table.add_column("action", ratio=3)
    table.add_column("id", style="dim", no_wrap=True, ratio=1)
    groups: dict[str, list[tuple[KeySpec, str]]] = {}
    for spec, key in rows:
        groups.setdefault(spec.scope, []).append((spec, key))
    for scope, members in groups.items():
        table.add_row("", Text(scope.title() if scope == "global" else scope, "bold underline"), "")
        for spec, key in members:
            table.add_row(display_key(key), spec.description, spec.id)
    return table


class HelpScreen(ModalScreen[None]):
    """Lists every key binding (global, pane switches, active pane) with its id."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 96; max-width: 100%; height: auto; max-height: 100%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    HelpScreen #help-intro { color: $text-muted; margin-bottom: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close help", id="help.close")
    ]

    def __init__(self, rows: list[tuple[KeySpec, str]], keymap_file: str) -> None:
        super().__init__()
        self.rows = rows
        self.keymap_file = keymap_file

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = "Help — keys (esc closes)"
            yield Static(Text(INTRO.format(keymap=self.keymap_file)), id="help-intro")
            yield Static(key_table(self.rows), id="help-keys")

    def action_close(self) -> None:
        self.dismiss(None)
