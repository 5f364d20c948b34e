"""The Chat pane's dialogs: the transcript picker (ctrl+l) and the eval presets editor (ctrl+o)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, OptionList, Select, Static, TextArea
from textual.widgets.option_list import Option

from nanochat_tui.eval_presets import Preset, save_presets, upsert
from nanochat_tui.transcripts import list_transcripts


class TranscriptPicker(ModalScreen[Path | None]):
    """Pick one of a run's transcripts; dismisses with its path."""

    DEFAULT_CSS = """
    TranscriptPicker { align: center middle; }
    TranscriptPicker > Vertical { width: 90%; max-width: 110; height: 80%; border: round $primary; background: $surface; }
    TranscriptPicker OptionList { height: 1fr; }
    """
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape", "dismiss_none", "Close", id="transcripts.close")
    ]

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.items = list_transcripts(self.run_dir)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Transcripts of {self.run_dir.name} — enter views · esc closes")
            if self.items:
                yield OptionList(*[Option(t.title, id=str(i)) for i, t in enumerate(self.items)])
            else:
                yield Static(
                    "No transcripts yet: chat with the checkpoint and they are saved here."
                )

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.items[int(event.option.id or 0)].path)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class PresetsScreen(ModalScreen[Preset | None]):
    """Eval presets: pick one (enter uses it), edit name/mode/prompt, ctrl+s saves to disk."""

    DEFAULT_CSS = """
    PresetsScreen { align: center middle; }
    PresetsScreen > Horizontal { width: 95%; max-width: 120; height: 80%; border: round $primary; background: $surface; }
    PresetsScreen OptionList { width: 28; height: 1fr; }
    PresetsScreen #preset-editor { width: 1fr; padding: 0 1; }
    PresetsScreen #preset-name { width: 1fr; }
    PresetsScreen #preset-mode { width: 20; }
    PresetsScreen TextArea { height: 1fr; }
    PresetsScreen #preset-buttons { height: auto; }
    PresetsScreen #preset-buttons Button { margin-right: 1; }
    """
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("ctrl+s", "save", "Save preset", id="presets.save", priority=True),
        Binding("ctrl+r", "use", "Use preset", id="presets.use", priority=True),
        Binding("escape", "close", "Close", id="presets.close"),
    ]

    def __init__(self, presets: list[Preset]) -> None:
        super().__init__()
        self.presets = presets

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield OptionList(*self._options(), id="preset-list")
            with Vertical(id="preset-editor"):
                with Horizontal(classes="row"):
                    yield Input(id="preset-name", placeholder="name")
                    yield Select(
                        [("continue text", "complete"), ("chat message", "chat")],
                        value="complete",
                        allow_blank=False,
                        id="preset-mode",
                    )
                yield TextArea(id="preset-prompt")
                with Horizontal(id="preset-buttons"):
                    yield Button("Use (ctrl+r)", id="use", variant="primary", compact=True)
                    yield Button("Save (ctrl+s)", id="save", compact=True)
                    yield Button("Delete", id="delete", variant="error", compact=True)
                    yield Button("Close (esc)", id="close", compact=True)

    def _options(self) -> list[Option]:
        return [Option(f"{p.name}  [{p.mode}]", id=p.name) for p in self.presets]

    def on_mount(self) -> None:
        listing = self.query_one(OptionList)
        if self.presets:
            listing.highlighted = 0
            self._edit(self.presets[0])
        listing.focus()

    def _edit(self, preset: Preset) -> None:
        self.query_one("#preset-name", Input).value = preset.name
        self.query_one("#preset-mode", Select).value = preset.mode
        self.query_one("#preset-prompt", TextArea).text = preset.prompt

    def editor_preset(self) -> Preset:
        mode = self.query_one("#preset-mode", Select).value
        return Preset(
            self.query_one("#preset-name", Input).value.strip() or "untitled",
            self.query_one("#preset-prompt", TextArea).text,
            "chat" if mode == "chat" else "complete",
        )

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        preset = next((p for p in self.presets if p.name == event.option.id), None)
        if preset is not None:
            self._edit(preset)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_use()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        {
            "use": self.action_use,
            "save": self.action_save,
            "delete": self.action_delete,
            "close": self.action_close,
        }[event.button.id or "close"]()

    def action_use(self) -> None:
        preset = self.editor_preset()
        if not preset.prompt.strip():
            self.notify("The prompt is empty", severity="warning")
            return
        self.dismiss(preset)

    def action_save(self) -> None:
        preset = self.editor_preset()
        if not preset.prompt.strip():
            self.notify("Cannot save an empty prompt", severity="warning")
            return
        self.presets = upsert(self.presets, preset)
        self._persist(f"Saved preset '{preset.name}'")
        listing = self.query_one(OptionList)
        listing.highlighted = next(i for i, p in enumerate(self.presets) if p.name == preset.name)

    def action_delete(self) -> None:
        name = self.query_one("#preset-name", Input).value.strip()
        if not any(p.name == name for p in self.presets):
            return
        self.presets = [p for p in self.presets if p.name != name]
        self._persist(f"Deleted preset '{name}'")

    def _persist(self, message: str) -> None:
        try:
            save_presets(self.presets)
        except OSError as err:
            self.notify(f"cannot save presets: {err}", severity="error")
            return
        listing = self.query_one(OptionList)
        listing.clear_options()
        listing.add_options(self._options())
        self.notify(message, timeout=2)

    def action_close(self) -> None:
        self.dismiss(None)
