"""PromptModal: one input line with inline validation (panel specs, patches, run names)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class PromptModal(ModalScreen[str | None]):
    """One input line; ``validate(text) -> error or None`` runs on enter and shows errors inline."""

    DEFAULT_CSS = """
    PromptModal { align: center middle; }
    PromptModal > Vertical {
        width: 76; max-width: 95%; height: auto; padding: 1 2;
        border: round $accent; background: $surface;
    }
    PromptModal .help { color: $text-muted; margin-bottom: 1; }
    PromptModal .error { color: $error; height: auto; }
    """
    BINDINGS: ClassVar[list[Binding]] = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(
        self,
        title: str,
        *,
        help: str = "",
        value: str = "",
        placeholder: str = "",
        validate: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.title_text, self.help_text, self.value = title, help, value
        self.placeholder = placeholder
        self.validator = validate

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.title_text, style="bold"))
            if self.help_text:
                yield Static(Text(self.help_text), classes="help")
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")
            yield Static("", classes="error", id="prompt-error")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        error = self.validator(text) if self.validator else None
        if error:
            self.query_one("#prompt-error", Static).update(Text(error))
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)
