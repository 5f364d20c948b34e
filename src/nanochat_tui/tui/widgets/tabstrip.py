"""The top row: one label per registered pane with its key, the active one highlighted."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from nanochat_tui.tui.keymap import display_key


class TabStrip(Widget):
    """``1 Config  2 Checkpoints …`` plus a right-aligned hint; the app calls ``show()``.
    When the labels and the hint do not fit, inactive titles shrink to 4 characters, then to
    their keys alone, so the hint (how to get help) stays on screen."""

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

    def _tabs(self, inactive_chars: int | None) -> Text:
        """The tab labels; inactive titles cut to ``inactive_chars`` (None = whole)."""
        text = Text(no_wrap=True, overflow="ellipsis")
        for name, key, title in self.tabs:
            active = name == self.active
            if not active and inactive_chars is not None:
                title = title[:inactive_chars]
            text.append(f" {display_key(key)} ", "bold reverse" if active else "bold cyan")
            text.append(f"{title} " if title else "", "bold reverse" if active else "")
            text.append(" ")
        return text

    def render(self) -> Text:
        """Whole titles when they fit beside the hint, else inactive ones shortened, then keys."""
        width = self.content_region.width
        for chars in (None, 4, 0):
            text = self._tabs(chars)
            pad = width - text.cell_len - len(self.hint)
            if pad >= 1:
                text.append(" " * pad)
                text.append(self.hint, "dim")
                return text
        return text
