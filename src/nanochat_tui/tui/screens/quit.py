"""QuitScreen: what to do with a run that lives inside the app when the user quits.

Dismisses with "stop" (checkpoint, status ``stopped``, then quit), "background" (stop at a
checkpoint and resume it in a detached process that outlives the app, then quit) or None (stay).
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class QuitScreen(ModalScreen[str | None]):
    """s = stop gracefully · b = move to the background · esc/c = cancel."""

    DEFAULT_CSS = """
    QuitScreen { align: center middle; }
    QuitScreen > Vertical {
        width: 72; max-width: 100%; height: auto; padding: 1 2;
        border: round $warning; background: $surface;
    }
    QuitScreen #quit-question { width: 100%; margin-bottom: 1; }
    QuitScreen Horizontal { height: auto; align-horizontal: right; }
    QuitScreen Button { margin-left: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "choose('stop')", "Stop the run gracefully, then quit", id="quit.stop"),
        Binding(
            "b", "choose('background')", "Move the run to the background", id="quit.background"
        ),
        Binding("escape,c", "choose(None)", "Cancel: stay in the app", id="quit.cancel"),
    ]

    def __init__(self, run_name: str) -> None:
        super().__init__()
        self.run_name = run_name

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                f"Run '{self.run_name}' trains inside this app. Before quitting:\n"
                "  s  stop it gracefully: checkpoint now, status 'stopped'\n"
                "  b  move it to the background: a detached process resumes\n"
                "     from a fresh checkpoint and keeps training\n"
                "  c  cancel and stay",
                id="quit-question",
                markup=False,
            )
            with Horizontal():
                yield Button("Cancel (c)", id="cancel", compact=True)
                yield Button("Background (b)", id="background", variant="primary", compact=True)
                yield Button("Stop (s)", id="stop", variant="warning", compact=True)

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)
