"""SOUL pane: edit a project's SOUL.md and agent interface, save versions, diff them.

Left: SOUL.md in a markdown editor, validated on every change (the line and what to do).
Right: the agent interface (the built-in python calculator, then the user's tools: a adds,
e/enter edits, x deletes) and the saved versions (enter loads one into the editor, m marks one,
d diffs the marked — or the previous — version against the highlighted one). ctrl+s saves a new
version (only when something changed), ctrl+o opens another project, t shows its datasets.
The editor has the focus when the pane is shown; esc leaves it for the tools table (whose single
keys act), tab moves on to the versions. Quitting with unsaved edits asks first.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import DataTable, Static, TextArea

from nanochat_tui import projects
from nanochat_tui.align.interface import PYTHON, Interface, parse_interface, render_interface
from nanochat_tui.align.soul import parse_soul
from nanochat_tui.errors import UserError
from nanochat_tui.tui.messages import ConfigChanged

log = logging.getLogger("nanochat_tui.tui.soul")
HINT = "^s save · ^o project · ^r revert · a/e/x tools · ⏎/m/d versions · t datasets"


def _schema_summary(schema: dict[str, Any]) -> str:
    props = schema.get("properties", {})
    if schema.get("type") == "object" and isinstance(props, dict):
        return ", ".join(props) or "—"
    return str(schema.get("type", "any"))


class SoulPane(Widget):
    """A project's SOUL versions and agent interface (see the module docstring)."""

    DEFAULT_CSS = """
    SoulPane { padding: 0 1; }
    SoulPane #soul-header { height: 1; }
    SoulPane #soul-body { height: 1fr; }
    SoulPane #soul-left { width: 3fr; min-width: 36; }
    SoulPane #soul-right { width: 2fr; min-width: 30; padding-left: 1; }
    SoulPane #soul-editor { height: 1fr; }
    SoulPane #soul-status { height: auto; max-height: 4; }
    SoulPane #soul-status.bad { color: $error; }
    SoulPane #soul-status.good { color: $success; }
    SoulPane .soul-title { text-style: bold; color: $accent; height: 1; }
    SoulPane #soul-tools { height: 1fr; }
    SoulPane #soul-versions { height: 1fr; }
    SoulPane #soul-hint { height: 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save SOUL + interface as a new version", id="soul.save"),
        Binding("ctrl+o", "pick_project", "Open or create a project", id="soul.project"),
        Binding("ctrl+r", "revert", "Revert the editor to the latest version", id="soul.revert"),
        Binding("a", "add_tool", "Add a tool to the agent interface", id="soul.add_tool"),
        Binding("e", "edit_tool", "Edit the highlighted tool", id="soul.edit_tool"),
        Binding("x", "delete_tool", "Delete the highlighted tool", id="soul.delete_tool"),
        Binding("m", "mark_version", "Mark the highlighted version for a diff", id="soul.mark"),
        Binding(
            "d",
            "diff",
            "Diff the marked (or previous) version with the highlighted one",
            id="soul.diff",
        ),
        Binding("t", "datasets", "Show the project's datasets", id="soul.datasets"),
    ]
    can_focus = False

    def __init__(self, project: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.project_name = project
        self.project: projects.Project | None = None
        self.loaded_version: int | None = None  # the version the editor started from
        self.saved_soul = ""  # its texts, to tell whether anything changed
        self.saved_interface = ""
        self.tools: list[dict[str, Any]] = []
        self.marked: int | None = None
        self.soul_error: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="soul-header")
        with Horizontal(id="soul-body"):
            with Vertical(id="soul-left"):
                yield TextArea("", language="markdown", id="soul-editor", soft_wrap=True)
                yield Static("", id="soul-status")
            with Vertical(id="soul-right"):
                yield Static("Agent interface", classes="soul-title")
                yield DataTable(id="soul-tools", cursor_type="row", zebra_stripes=True)
                yield Static("Versions", classes="soul-title")
                yield DataTable(id="soul-versions", cursor_type="row", zebra_stripes=True)
        yield Static(HINT, id="soul-hint")

    def on_mount(self) -> None:
        self.query_one("#soul-tools", DataTable).add_columns("tool", "parameters", "runs")
        self.query_one("#soul-versions", DataTable).add_columns("version", "saved (UTC)", "name")
        name = self.project_name or self._config_project()
        try:
            self.open(name)
        except UserError as err:
            self.app.notify(f"{err.message}; opened the default project", severity="warning")
            self.open(projects.DEFAULT)

    def initial_focus(self) -> Widget:
        """The SOUL editor: what is typed on entry lands in it, never acting as a tool or version
        key. esc leaves it (to the tools table: a/e/x, then tab to the versions, 1..9 switch)."""
        return self.query_one("#soul-editor", TextArea)

    def quit_concern(self) -> str | None:
        """What quitting now would lose (the app asks first)."""
        if self.project is not None and self.modified():
            return f"SOUL of project {self.project.name} has unsaved edits (ctrl+s saves them)"
        return None

    def _config_project(self) -> str:
        state = getattr(self.app, "state", None)
        config = getattr(state, "config", None)
        return config.align.project if config is not None else projects.DEFAULT

    # ------------------------------------------------------------ loading

    def open(self, name: str, version: int | None = None) -> None:
        """Show project ``name`` (the default one is created on first use), at ``version``."""
        self.project = projects.open_project(name)
        self.project_name = name
        self.marked = None
        self.load_version(version)

    def load_version(self, version: int | None) -> None:
        assert self.project is not None
        saved = self.project.read(version)
        self.loaded_version = saved.version
        self.saved_soul = saved.soul_text
        try:
            interface = saved.interface()
        except UserError as err:  # a hand-edited file: show it, keep the tools empty
            self.app.notify(str(err), severity="error", timeout=10)
            interface = Interface()
        self.tools = [t.to_json() for t in interface.tools]
        self.saved_interface = render_interface(interface)
        self.query_one("#soul-editor", TextArea).load_text(saved.soul_text)
        self.refresh_tools()
        self.refresh_versions()
        self.validate()

    # ------------------------------------------------------------ state shown

    def interface_text(self) -> str:
        """interface.json for the tools in the table (each was validated by its dialog)."""
        return render_interface(parse_interface(json.dumps({"tools": self.tools})))

    def modified(self) -> bool:
        editor = self.query_one("#soul-editor", TextArea)
        return editor.text != self.saved_soul or self.interface_text() != self.saved_interface

    def refresh_header(self) -> None:
        assert self.project is not None
        latest = self.project.latest()
        label = projects.version_label(self.loaded_version or 0)
        where = (
            "latest"
            if self.loaded_version == latest
            else f"latest is {projects.version_label(latest or 0)}"
        )
        text = Text.assemble(
            ("Project ", "dim"), (self.project.name, "bold"), ("  SOUL ", "dim"),
            (label, "bold"), (f" ({where})", "dim"),
        )  # fmt: skip
        if self.modified():
            text.append("  ● modified (ctrl+s saves a new version)", "yellow")
        self.query_one("#soul-header", Static).update(text)

    def refresh_tools(self) -> None:
        table = self.query_one("#soul-tools", DataTable)
        row = table.cursor_row
        table.clear()
        table.add_row(PYTHON.name, _schema_summary(PYTHON.parameters), "built-in", key=PYTHON.name)
        for tool in self.tools:
            runs = " ".join(tool.get("command", [])) or "—"
            table.add_row(tool["name"], _schema_summary(tool["parameters"]), runs, key=tool["name"])
        table.move_cursor(row=min(row, table.row_count - 1))
        self.refresh_header()

    def refresh_versions(self) -> None:
        assert self.project is not None
        table = self.query_one("#soul-versions", DataTable)
        table.clear()
        cursor = 0
        for i, v in enumerate(self.project.versions()):
            folder = self.project.soul_dir / projects.version_label(v)
            saved = datetime.fromtimestamp(folder.stat().st_mtime, UTC).strftime("%m-%d %H:%M")
            try:
                name = self.project.read(v).soul().name
            except UserError:
                name = "(invalid)"
            label = projects.version_label(v) + (" ◆" if v == self.marked else "")
            table.add_row(label, saved, name, key=str(v))
            if v == self.loaded_version:
                cursor = i
        table.move_cursor(row=cursor)

    @on(TextArea.Changed, "#soul-editor")
    def soul_changed(self, event: TextArea.Changed) -> None:
        event.stop()
        self.validate()

    def validate(self) -> bool:
        """Check the editor's SOUL.md; show the line and what to do, or a summary."""
        status = self.query_one("#soul-status", Static)
        try:
            soul = parse_soul(self.query_one("#soul-editor", TextArea).text, "SOUL.md")
        except UserError as err:
            self.soul_error = str(err)
            status.update(Text("✗ " + str(err)))
            status.set_classes("bad")
            self.refresh_header()
            return False
        self.soul_error = None
        n = len(soul.principles)
        tools = ", ".join([PYTHON.name, *(t["name"] for t in self.tools)])
        status.update(Text(f"✓ {soul.name}: {n} principle{'s' if n != 1 else ''}; tools: {tools}"))
        status.set_classes("good")
        self.refresh_header()
        return True

    # ------------------------------------------------------------ actions: save, project

    def action_save(self) -> None:
        assert self.project is not None
        if not self.validate():
            self.app.notify("not saved: " + (self.soul_error or ""), severity="error", timeout=8)
            return
        text = self.query_one("#soul-editor", TextArea).text
        try:
            version, created = self.project.save_soul(text, self.interface_text())
        except (UserError, OSError) as err:
            self.app.notify(f"not saved: {err}", severity="error", timeout=8)
            return
        label = projects.version_label(version)
        if created:
            log.info("project %s: saved SOUL %s", self.project.name, label)
            self.app.notify(f"saved {self.project.name} SOUL {label}", timeout=4)
        else:
            self.app.notify(f"nothing changed since {label}: no new version", timeout=4)
        self.load_version(version)

    def action_revert(self) -> None:
        self.load_version(None)
        self.app.notify("editor reverted to the latest saved version", timeout=3)

    def _confirm_discard(self, then) -> None:
        if not self.modified():
            then()
            return
        from nanochat_tui.tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.app.push_screen(
            ConfirmScreen("Discard the unsaved SOUL changes?", yes="Discard"), answered
        )

    def action_pick_project(self) -> None:
        from nanochat_tui.tui.screens.soul_dialogs import NEW_PROJECT, ProjectPicker

        def chosen(name: str | None) -> None:
            if name == NEW_PROJECT:
                self._confirm_discard(self._new_project)
            elif name and name != self.project_name:
                self._confirm_discard(lambda: self.switch_project(name))

        self.app.push_screen(
            ProjectPicker(projects.list_projects(), self.project_name or ""), chosen
        )

    def _new_project(self) -> None:
        from nanochat_tui.tui.screens.prompt import PromptModal

        def check(name: str) -> str | None:
            try:
                projects.check_name(name)
            except UserError as err:
                return str(err)
            return "that project exists" if name in projects.list_projects() else None

        def made(name: str | None) -> None:
            if not name:
                return
            try:
                projects.create_project(name)
            except (UserError, OSError) as err:
                self.app.notify(str(err), severity="error")
                return
            self.switch_project(name)
            self.app.notify(f"created project {name} with the starter SOUL", timeout=4)

        self.app.push_screen(
            PromptModal("New project", help="It starts with the starter SOUL.", validate=check),
            made,
        )

    def switch_project(self, name: str) -> None:
        """Open project ``name`` and make it the active config's ``align.project``, so the next
        alignment run uses its SOUL."""
        self.open(name)
        state = getattr(self.app, "state", None)
        if state is None or state.config.align.project == name:
            return
        from nanochat_tui.config import ConfigError

        try:
            config = state.set_override("align.project", name)
        except ConfigError as err:
            self.app.notify(f"align.project not set: {err}", severity="warning")
            return
        self.post_message(ConfigChanged(config))
        self.app.notify(f"align.project = {name}: new alignment runs use its SOUL", timeout=4)

    def on_config_changed(self, message: ConfigChanged) -> None:
        """The Config pane changed align.project: show that project (unless edits are unsaved)."""
        name = message.config.align.project
        if not self.is_mounted or self.project is None or name == self.project_name:
            return
        if self.modified():
            self.app.notify(
                f"align.project is now {name}; the SOUL pane keeps {self.project_name} "
                "until its edits are saved (ctrl+s) or reverted (ctrl+r)",
                severity="warning",
            )
            return
        try:
            self.open(name)
        except UserError as err:
            self.app.notify(str(err), severity="warning", timeout=8)

    def action_datasets(self) -> None:
        from nanochat_tui.tui.screens.datasets import DatasetsScreen

        assert self.project is not None
        self.app.push_screen(DatasetsScreen(self.project))

    # ------------------------------------------------------------ actions: tools

    def _highlighted_tool(self) -> dict[str, Any] | None:
        table = self.query_one("#soul-tools", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        if key == PYTHON.name:
            self.app.notify("python is the built-in calculator: it cannot be changed", timeout=3)
            return None
        return next((t for t in self.tools if t["name"] == key), None)

    def action_add_tool(self) -> None:
        self._edit(None)

    def action_edit_tool(self) -> None:
        tool = self._highlighted_tool()
        if tool is not None:
            self._edit(tool)

    @on(DataTable.RowSelected, "#soul-tools")
    def tool_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_edit_tool()

    def _edit(self, tool: dict[str, Any] | None) -> None:
        from nanochat_tui.tui.screens.soul_dialogs import ToolDialog

        others = {t["name"] for t in self.tools if t is not tool}

        def done(result: dict[str, Any] | None) -> None:
            if result is None:
                return
            if tool is None:
                self.tools.append(result)
            else:
                self.tools[self.tools.index(tool)] = result
            self.refresh_tools()
            self.validate()

        self.app.push_screen(ToolDialog(tool, others), done)

    def action_delete_tool(self) -> None:
        tool = self._highlighted_tool()
        if tool is None:
            return
        self.tools.remove(tool)
        self.refresh_tools()
        self.validate()
        self.app.notify(f"tool {tool['name']} removed (ctrl+s saves)", timeout=3)

    # ------------------------------------------------------------ actions: versions

    def _highlighted_version(self) -> int | None:
        table = self.query_one("#soul-versions", DataTable)
        if table.row_count == 0:
            return None
        return int(table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value)

    @on(DataTable.RowSelected, "#soul-versions")
    def version_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        version = self._highlighted_version()
        if version is not None:
            self._confirm_discard(lambda: self.load_version(version))

    def action_mark_version(self) -> None:
        version = self._highlighted_version()
        self.marked = None if version == self.marked else version
        self.refresh_versions()
        table = self.query_one("#soul-versions", DataTable)
        if version is not None:
            table.move_cursor(row=table.get_row_index(str(version)))

    def action_diff(self) -> None:
        from nanochat_tui.tui.screens.soul_dialogs import DiffScreen

        assert self.project is not None
        new = self._highlighted_version()
        if new is None:
            return
        versions = self.project.versions()
        old = self.marked
        if old is None or old == new:
            earlier = [v for v in versions if v < new]
            if not earlier:
                self.app.notify("v0001 has no earlier version: m marks one to compare", timeout=4)
                return
            old = earlier[-1]
        a, b = sorted((old, new))
        title = (f"{self.project.name}: SOUL {projects.version_label(a)} → "
                 f"{projects.version_label(b)}")  # fmt: skip
        self.app.push_screen(DiffScreen(title, self.project.diff(a, b)))
