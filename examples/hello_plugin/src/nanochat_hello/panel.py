"""A panel type: the run's greeting and its latest step."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from nanochat_tui.panels.base import Panel


class HelloPanel(Panel):
    DEFAULT_TITLE = "hello"

    def compose(self) -> ComposeResult:
        yield Static("", id="hello-body")

    def draw(self, store) -> None:
        section = (store.run_start.get("config") or {}).get("plugins", {}).get("hello", {})
        words = " ".join([section.get("greeting", "hello")] * int(section.get("times", 1)))
        self.set_body("#hello-body", f"{words} — step {store.step}")
