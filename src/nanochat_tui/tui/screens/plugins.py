"""Plugins pane: every installed plugin with its version, status, what it registered, and why a
failed one was disabled; ``d`` switches the highlighted plugin off or on again (plugins.yaml,
applied at the next start)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable, Static

STATUS_STYLE = {"ok": "green", "failed": "bold red", "disabled": "yellow"}
HELP = (
    "Plugins come from the entry-point group nanochat_tui.plugins (docs/plugins.md). "
    "d disables/enables the highlighted plugin at the next start · "
    "CLI: nanochat-tui plugins [enable|disable NAME]"
)


class PluginsPane(Widget):
    """A table of installed plugins and the detail of the highlighted one."""

    DEFAULT_CSS = """
    PluginsPane { padding: 0 1; }
    PluginsPane DataTable { height: auto; max-height: 60%; }
    PluginsPane #plugins-detail { margin-top: 1; height: auto; }
    PluginsPane #plugins-help { color: $text-muted; margin-top: 1; height: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "toggle", "Disable/enable the highlighted plugin", id="plugins.toggle"),
    ]

    def compose(self) -> ComposeResult:
        yield DataTable(id="plugins-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="plugins-detail")
        yield Static(Text(HELP), id="plugins-help")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("plugin", "version", "status", "registered")
        self.fill()

    def rows(self) -> list[dict]:
        from nanochat_tui.plugin_host import plugin_rows

        return plugin_rows()

    def fill(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        rows = self.rows()
        for row in rows:
            table.add_row(
                row["name"],
                row["version"] or "—",
                Text(row["status"], STATUS_STYLE.get(row["status"], "")),
                str(len(row["registered"])),
                key=row["name"],
            )
        if not rows:
            self.query_one("#plugins-detail", Static).update(
                "No plugins installed. A plugin is a package with an entry point in the group "
                "nanochat_tui.plugins (see examples/ and docs/plugins.md)."
            )
        else:
            self.show_detail(rows[min(table.cursor_row, len(rows) - 1)])

    def show_detail(self, row: dict) -> None:
        text = Text()
        text.append(f"{row['name']} {row['version']}".rstrip(), "bold")
        text.append(f"  {row['status']}\n", STATUS_STYLE.get(row["status"], ""))
        if row["message"]:
            text.append(row["message"] + "\n", "red" if row["status"] == "failed" else "")
        for item in row["registered"]:
            text.append(f"  • {item}\n")
        self.query_one("#plugins-detail", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        name = event.row_key.value if event.row_key else None
        row = next((r for r in self.rows() if r["name"] == name), None)
        if row:
            self.show_detail(row)

    def initial_focus(self) -> Widget | None:
        return self.query_one(DataTable)

    def action_toggle(self) -> None:
        from nanochat_tui.errors import UserError
        from nanochat_tui.plugin_host import disabled_plugins, set_disabled

        table = self.query_one(DataTable)
        rows = self.rows()
        if not rows:
            return
        name = rows[min(table.cursor_row, len(rows) - 1)]["name"]
        off, _ = disabled_plugins()
        try:
            message = set_disabled(name, name not in off)
        except UserError as err:
            self.notify(str(err), severity="error")
            return
        self.notify(message)
