"""The top row: one label per registered pane with its key, the active one highlighted."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from nanochat_tui.tui.keymap import display_key


class TabStrip(Widget):
    """``1 Config  2 Checkpoints …`` plus a right-aligned hint; the app calls ``show()``."""

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
        width = self.content_region.width
        text = self._tabs(gap=" ")
        if text.cell_len + len(self.hint) >= width:
            text = self._tabs(gap="")  # many panes: one space between tabs keeps the hint shown
        pad = width - text.cell_len - len(self.hint)
        if pad >= 1:
            text.append(" " * pad)
            text.append(self.hint, "dim")
        return text

    def _tabs(self, gap: str) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        for name, key, title in self.tabs:
            active = name == self.active
            text.append(f" {display_key(key)} ", "bold reverse" if active else "bold cyan")
            text.append(f"{title} ", "bold reverse" if active else "")
            text.append(gap)
        return text
