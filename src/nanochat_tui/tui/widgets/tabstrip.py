"""The top row: one label per registered pane with its key, the active one highlighted."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from nanochat_tui.tui.keymap import display_key


class TabStrip(Static):
    """``1 Config  2 Checkpoints …`` plus a right-aligned hint; the app calls ``show()``."""

    DEFAULT_CSS = """
    TabStrip { dock: top; height: 1; background: $panel; padding: 0 1; }
    """

    def show(self, tabs: list[tuple[str, str, str]], active: str, hint: str) -> None:
        """tabs = (name, key, title)."""
        text = Text(no_wrap=True, overflow="ellipsis")
        for name, key, title in tabs:
            style = "bold reverse" if name == active else ""
            text.append(f" {display_key(key)} ", "bold cyan" if name != active else style)
            text.append(f"{title} ", style)
            text.append(" ")
        pad = max(1, self.size.width - 2 - text.cell_len - len(hint)) if self.size.width else 2
        text.append(" " * pad)
        text.append(hint, "dim")
        self.update(text)
