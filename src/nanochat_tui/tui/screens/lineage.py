"""LineageScreen: the runs a run descends from (base → SFT → DPO), opened with ``g`` on Runs.

One block per run, root first: its name, stage, the parent step it started from, project and SOUL
version, the dataset it trained on (rows and content hash) and notes (imported, outside the runs
dir); a parent that is missing, a cycle or an unreadable run shows as a ⚠ line. Data:
``orchestrator/lineage.py``. ``esc``/``q``/``g`` close it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def lineage_text(nodes: list[Any]) -> Text:
    """The chain as rich text: one block per run, joined by ``↓``."""
    text = Text()
    for i, node in enumerate(nodes):
        if i:
            text.append("   ↓\n", style="dim")
        if node.problem:
            text.append(f"⚠ {node.problem}\n", style="bold yellow")
            continue
        last = i == len(nodes) - 1
        text.append(node.name, style="bold cyan" if last else "bold")
        text.append(f"  {node.stage or '?'}\n", style="green")
        for line in node.details()[1:]:
            key, _, value = line.partition(": ")
            if value:
                text.append(f"   {key}: ", style="dim")
                text.append(f"{value}\n")
            else:
                text.append(f"   {line}\n", style="dim")
    text.rstrip()
    return text


class LineageScreen(ModalScreen[None]):
    """The lineage of one run, read once when opened."""

    DEFAULT_CSS = """
    LineageScreen { align: center middle; }
    LineageScreen > Vertical {
        width: 90%; max-width: 140; height: auto; max-height: 90%; padding: 0 1;
        border: round $accent; background: $surface;
    }
    LineageScreen #lineage-title { height: auto; background: $boost; padding: 0 1; }
    LineageScreen VerticalScroll { height: auto; max-height: 75vh; }
    LineageScreen #lineage-hint { height: 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,g", "close", "Close", id="lineage.close"),
    ]

    def __init__(self, nodes: list[Any]) -> None:
        super().__init__()
        self.nodes = nodes

    def compose(self) -> ComposeResult:
        from nanochat_tui.orchestrator.lineage import chain_text

        with Vertical():
            yield Static(Text(f"Lineage: {chain_text(self.nodes)}"), id="lineage-title")
            with VerticalScroll():
                yield Static(lineage_text(self.nodes), id="lineage-body")
            yield Static("esc close", id="lineage-hint")

    def action_close(self) -> None:
        self.dismiss(None)
