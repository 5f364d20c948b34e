"""The top row: one label per registered pane with its key, the active one highlighted."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from nanochat_tui.tui.keymap import display_key


class TabStrip(Widget):
    """``1 Config  2 Checkpoints …`` plus a right-aligned hint; the app calls ``show()``. When
    the tabs do not fit beside the hint, the last tabs are cut with an ellipsis (``?`` help lists
    every pane key)."""

    DEFAULT_CSS = """
    TabStrip { dock: top; height: 1; background: $panel; padding: 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tabs: list[tuple[str, str, str]] = []
        self.active = ""
        self.hint = ""

    def show(self, tabs: list[tuple[str, str, str]], active: str, hint: str) -> None:
        """tabs = (name, key, title)."""
        self.tabs, self.active, self.hint = tabs, active, hint
        self.refresh()

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        for name, key, title in self.tabs:
            active = name == self.active
            text.append(f" {display_key(key)} ", "bold reverse" if active else "bold cyan")
            text.append(f"{title} ", "bold reverse" if active else "")
            text.append(" ")
        width = self.content_region.width
        room = width - len(self.hint) - 1
        if room < 20:  # too narrow for both: the tabs win
            return text
        if text.cell_len > room:  # many panes: the help hint stays, the last tabs are cut
            text.truncate(room, overflow="ellipsis")
        text.append(" " * (width - text.cell_len - len(self.hint)))
        text.append(self.hint, "dim")
        return text
