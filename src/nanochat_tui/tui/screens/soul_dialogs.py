"""The SOUL pane's dialogs: a tool form with live validation, the project picker, the diff view."""

from __future__ import annotations

import json
import shlex
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from nanochat_tui.align.interface import DEFAULT_RETURNS, parse_tool
from nanochat_tui.errors import UserError

NEW_PROJECT = "+ new project…"


def tool_from_fields(
    name: str, description: str, parameters: str, returns: str, command: str
) -> dict[str, Any]:
    """The tool object the form describes; a UserError names the field that does not parse."""
    out: dict[str, Any] = {"name": name.strip(), "description": description.strip()}
    for key, text in (("parameters", parameters), ("returns", returns)):
        try:
            out[key] = json.loads(text) if text.strip() else None
        except json.JSONDecodeError as err:
            raise UserError(
                f"{key}: not JSON ({err.msg}, line {err.lineno} column {err.colno})",
                "write a JSON Schema object",
            ) from None
        if out[key] is None:
            del out[key]
    try:
        argv = shlex.split(command)
    except ValueError as err:
        raise UserError(f"command: {err}", "close the quote") from None
    if argv:
        out["command"] = argv
    return out


class ToolDialog(ModalScreen[dict | None]):
    """Add or edit one tool: every change is validated (the tool, the field, the reason)."""

    DEFAULT_CSS = """
    ToolDialog { align: center middle; }
    ToolDialog > Vertical {
        width: 90; max-width: 98%; height: auto; max-height: 98%; padding: 0 1;
        border: round $accent; background: $surface;
    }
    ToolDialog .label { color: $text-muted; }
    ToolDialog Input { margin: 0; }
    ToolDialog #tool-parameters { height: 8; }
    ToolDialog #tool-status { height: auto; max-height: 4; }
    ToolDialog #tool-status.bad { color: $error; }
    ToolDialog #tool-status.good { color: $success; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "submit", "Keep the tool", id="tool.submit", priority=True),
        Binding("escape", "cancel", "Cancel", id="tool.cancel"),
    ]

    def __init__(self, tool: dict[str, Any] | None, taken: set[str]) -> None:
        super().__init__()
        self.tool = tool or {}
        self.taken = taken  # names of the other tools
        self.result: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        t = self.tool
        params = t.get("parameters", {"type": "object", "properties": {}, "required": []})
        with Vertical():
            title = f"Edit tool {t['name']}" if t.get("name") else "New tool"
            yield Static(Text(title + "  (ctrl+s keeps it, esc cancels)", style="bold"))
            yield Static("name", classes="label")
            yield Input(t.get("name", ""), placeholder="get_weather", id="tool-name", compact=True)
            yield Static("description (the model reads it)", classes="label")
            yield Input(t.get("description", ""), id="tool-description", compact=True)
            yield Static("parameters: a JSON Schema object", classes="label")
            yield TextArea(
                json.dumps(params, indent=2), language="json", id="tool-parameters", compact=True
            )
            yield Static("returns: a JSON Schema", classes="label")
            yield Input(
                json.dumps(t.get("returns", DEFAULT_RETURNS)), id="tool-returns", compact=True
            )
            yield Static(
                "command (argv; arguments arrive as JSON on stdin; optional)", classes="label"
            )
            yield Input(
                shlex.join(t.get("command", [])),
                placeholder="python3 tools/weather.py",
                id="tool-command",
                compact=True,
            )
            yield Static("", id="tool-status")

    def on_mount(self) -> None:
        self.query_one("#tool-name", Input).focus()
        self.validate()

    @on(Input.Changed)
    @on(TextArea.Changed)
    def changed(self, event) -> None:
        event.stop()
        self.validate()

    def validate(self) -> dict[str, Any] | None:
        """Check the form; show the reason or ✓; the tool object when valid."""
        status = self.query_one("#tool-status", Static)
        try:
            obj = tool_from_fields(
                self.query_one("#tool-name", Input).value,
                self.query_one("#tool-description", Input).value,
                self.query_one("#tool-parameters", TextArea).text,
                self.query_one("#tool-returns", Input).value,
                self.query_one("#tool-command", Input).value,
            )
            tool = parse_tool(obj, "tool")
            if tool.name in self.taken:
                raise UserError(f"tool ({tool.name!r}): another tool has that name", "rename it")
        except UserError as err:
            status.update(Text("✗ " + str(err)))
            status.set_classes("bad")
            return None
        status.update(Text(f"✓ {tool.name}: valid"))
        status.set_classes("good")
        return tool.to_json()

    def action_submit(self) -> None:
        tool = self.validate()
        if tool is None:
            self.notify("fix the tool first (the reason is under the form)", severity="warning")
            return
        self.dismiss(tool)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ProjectPicker(ModalScreen[str | None]):
    """Pick a project, or ``NEW_PROJECT`` to create one; dismisses with the choice."""

    DEFAULT_CSS = """
    ProjectPicker { align: center middle; }
    ProjectPicker > Vertical {
        width: 50; max-width: 95%; height: auto; max-height: 90%; padding: 0 1;
        border: round $accent; background: $surface;
    }
    ProjectPicker OptionList { height: auto; max-height: 16; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="project_picker.cancel")
    ]

    def __init__(self, names: list[str], current: str) -> None:
        super().__init__()
        self.names, self.current = names, current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Open a project (enter)", style="bold"))
            options = [
                Option(f"{n}{'  (open)' if n == self.current else ''}", id=n) for n in self.names
            ]
            yield OptionList(*options, Option(NEW_PROJECT, id=NEW_PROJECT), id="project-list")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.focus()
        if self.current in self.names:
            options.highlighted = self.names.index(self.current)

    @on(OptionList.OptionSelected)
    def chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


def diff_text(diff: str) -> Text:
    """A unified diff coloured like git's: additions green, removals red, hunks cyan."""
    text = Text()
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        else:
            style = ""
        text.append(line + "\n", style)
    return text


class DiffScreen(ModalScreen[None]):
    """A scrollable unified diff between two SOUL versions; esc closes."""

    DEFAULT_CSS = """
    DiffScreen { align: center middle; }
    DiffScreen > Vertical {
        width: 100%; height: 100%; padding: 0 1; border: round $accent; background: $surface;
    }
    DiffScreen #diff-title { text-style: bold; }
    DiffScreen VerticalScroll { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Close the diff", id="diff.close")
    ]

    def __init__(self, title: str, diff: str) -> None:
        super().__init__()
        self.title_text, self.diff = title, diff

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                Text(self.title_text + "  (esc closes; ↑↓ pgup pgdn scroll)"), id="diff-title"
            )
            body = diff_text(self.diff) if self.diff else Text("no differences", "dim")
            with VerticalScroll(id="diff-scroll"):
                yield Static(body, id="diff-body")

    def on_mount(self) -> None:
        self.query_one("#diff-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)
