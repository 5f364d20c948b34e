"""SOUL pane and Datasets view through the real app: live validation, saving versions, the tool
form, the diff view, the project picker, and a dataset's bad lines and preview."""

from __future__ import annotations

import json

import pytest
from textual.widgets import DataTable, Input, Static, TextArea

from helpers import pilot_wait_for
from nanochat_tui import projects
from nanochat_tui.tui.app import NanochatApp
from nanochat_tui.tui.messages import ConfigChanged

pytestmark = pytest.mark.anyio
SIZE = (120, 40)


async def _open(pilot):
    app = pilot.app
    await pilot_wait_for(pilot, lambda: app.started, what="app start")
    await pilot.press("7")
    await pilot_wait_for(pilot, lambda: app.active_pane == "soul", what="SOUL pane")
    await pilot.pause()
    from nanochat_tui.tui.screens.soul import SoulPane

    return app.query_one(SoulPane)


def _status(pane) -> str:
    return str(pane.query_one("#soul-status", Static).render())


async def test_edit_invalid_then_save_new_version():
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        pane = await _open(pilot)
        project = projects.open_project()
        assert project.versions() == [1] and "✓ nanochat: 4 principles" in _status(pane)
        editor = pane.query_one("#soul-editor", TextArea)
        editor.focus()
        editor.move_cursor((0, 0))
        await pilot.press("shift+end", "backspace")  # the name line is gone
        await pilot.pause()
        assert "✗ SOUL.md, line 3: a SOUL starts with its name" in _status(pane)
        assert "make the first line '# <Name>'" in _status(pane)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert project.versions() == [1]  # an invalid SOUL is never saved
        await pilot.press(*"# Ada")
        await pilot.pause()
        assert "✓ Ada: 4 principles" in _status(pane)
        assert "modified" in str(pane.query_one("#soul-header", Static).render())
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert project.versions() == [1, 2]
        assert project.read(2).soul().name == "Ada"
        await pilot.press("ctrl+s")  # nothing changed: no new version
        await pilot.pause()
        assert project.versions() == [1, 2]
        assert pane.query_one("#soul-versions", DataTable).row_count == 2


async def test_tool_form_validates_live_and_saves():
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        pane = await _open(pilot)
        from nanochat_tui.tui.screens.soul_dialogs import ToolDialog

        pane.query_one("#soul-tools", DataTable).focus()
        await pilot.press("a")
        await pilot_wait_for(pilot, lambda: isinstance(app.screen, ToolDialog), what="tool form")
        dialog = app.screen
        status = dialog.query_one("#tool-status", Static)
        await pilot.press(*"weather", "tab", *"Weather for a city.")
        dialog.query_one("#tool-parameters", TextArea).load_text('{"type": "objekt"}')
        await pilot.pause()
        assert "parameters: not a valid JSON Schema" in str(status.render())
        assert "'objekt' is not valid" in str(status.render())
        await pilot.press("ctrl+s")  # refused: the dialog stays
        await pilot.pause()
        assert app.screen is dialog
        params = {"type": "object", "properties": {"city": {"type": "string"}}}
        dialog.query_one("#tool-parameters", TextArea).load_text(json.dumps(params))
        dialog.query_one("#tool-command", Input).value = "python3 weather.py"
        await pilot.pause()
        assert "✓ weather: valid" in str(status.render())
        await pilot.press("ctrl+s")
        await pilot_wait_for(pilot, lambda: app.screen is not dialog, what="form closed")
        table = pane.query_one("#soul-tools", DataTable)
        assert table.row_count == 2 and table.get_row("weather")[1] == "city"
        await pilot.press("ctrl+s")
        await pilot.pause()
        project = projects.open_project()
        assert project.versions() == [1, 2]
        tool = project.read(2).interface().tools[0]
        assert (tool.name, tool.command) == ("weather", ("python3", "weather.py"))
        table.focus()
        table.move_cursor(row=0)
        await pilot.press("x")  # python is built in: refused
        await pilot.pause()
        assert table.row_count == 2
        table.move_cursor(row=1)
        await pilot.press("x")
        await pilot.pause()
        assert table.row_count == 1 and pane.tools == []


async def test_diff_between_versions_and_project_picker():
    project = projects.open_project()
    first = project.read().soul_text
    project.save_soul(first.replace("# nanochat", "# Ada"), "")
    project.save_soul(first.replace("# nanochat", "# Bea"), "")
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        pane = await _open(pilot)
        from nanochat_tui.tui.screens.soul_dialogs import DiffScreen

        versions = pane.query_one("#soul-versions", DataTable)
        versions.focus()
        assert versions.cursor_row == 2  # the loaded (latest) version
        await pilot.press("d")  # v0002 → v0003
        await pilot_wait_for(pilot, lambda: isinstance(app.screen, DiffScreen), what="diff")
        body = str(app.screen.query_one("#diff-body", Static).render())
        assert "-# Ada" in body and "+# Bea" in body and "v0002 → v0003" in app.screen.title_text
        await pilot.press("escape")
        await pilot.pause()
        versions.move_cursor(row=0)
        await pilot.press("m", "down", "down", "d")  # marked v0001 → v0003
        await pilot_wait_for(pilot, lambda: isinstance(app.screen, DiffScreen), what="diff")
        body = str(app.screen.query_one("#diff-body", Static).render())
        assert "-# nanochat" in body and "+# Bea" in body
        await pilot.press("escape")
        await pilot.pause()
        versions.move_cursor(row=0)
        await pilot.press("enter")  # load v0001 into the editor
        await pilot.pause()
        assert pane.query_one("#soul-editor", TextArea).text == first
        await pilot.press("ctrl+o")
        await pilot.pause()
        await pilot.press("end", "enter")  # "+ new project…"
        await pilot.pause()
        await pilot.press(*"beta", "enter")
        await pilot_wait_for(pilot, lambda: pane.project_name == "beta", what="new project")
        assert projects.list_projects() == ["beta", "default"]
        assert "Project beta" in str(pane.query_one("#soul-header", Static).render())
        assert app.state.config.align.project == "beta"  # new alignment runs use its SOUL
        assert app.state.overrides["align.project"] == "beta"
        config = app.state.set_override("align.project", "default")  # as the Config pane does
        app.query_one("#pane-config").post_message(ConfigChanged(config))
        await pilot_wait_for(pilot, lambda: pane.project_name == "default", what="config follow")


async def test_datasets_view_lists_bad_lines_and_previews():
    project = projects.open_project()
    good = {
        "messages": [
            {"role": "user", "content": "What is 2+3?"},
            {"role": "assistant", "content": [{"type": "python", "text": "2+3"}]},
            {"role": "tool", "content": "5"},
            {"role": "assistant", "content": "It is 5."},
        ]
    }
    bad_role = {"messages": [{"role": "robot", "content": "x"}]}
    lines = [json.dumps(good), "{oops", json.dumps(bad_role)]
    (project.datasets_dir / "chat.jsonl").write_text("\n".join(lines) + "\n")
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await _open(pilot)
        from nanochat_tui.tui.screens.datasets import DatasetsScreen

        await pilot.press("escape", "t")  # leave the editor (focused on entry), then t
        await pilot_wait_for(pilot, lambda: isinstance(app.screen, DatasetsScreen), what="view")
        screen = app.screen
        await pilot_wait_for(pilot, lambda: "chat" in screen.reports, what="dataset checked")
        await pilot.pause()
        table = screen.query_one("#ds-table", DataTable)
        assert [str(c) for c in table.get_row("chat")[:3]] == ["chat", "1", "2"]
        issues = screen.query_one("#ds-issue-table", DataTable)
        rows = [issues.get_row_at(i) for i in range(issues.row_count)]
        assert rows[0][0] == "2" and rows[0][1].startswith("malformed JSON")
        assert rows[1][0] == "3" and "unknown role 'robot'" in rows[1][1]
        assert "characters" in str(screen.query_one("#ds-header", Static).render())
        preview = screen.preview_text
        supervised = "".join(
            preview.plain[s.start : s.end] for s in preview.spans if "on green" in str(s.style)
        )
        assert supervised == "<|python_start|>2+3<|python_end|>It is 5.<|assistant_end|>"
        assert "What is 2+3?" in preview.plain
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, DatasetsScreen) and app.active_pane == "soul"
