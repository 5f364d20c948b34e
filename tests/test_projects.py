"""Projects: creation, SOUL versioning (immutable, only on change), diff, datasets, prefabs."""

from __future__ import annotations

import difflib
import json
import os

import pytest

from nanochat_tui import paths, projects
from nanochat_tui.align.soul import STARTER_SOUL
from nanochat_tui.errors import UserError

TOOL = {
    "tools": [
        {
            "name": "echo",
            "description": "Echo the text.",
            "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
        }
    ]
}


def test_default_project_on_first_use():
    assert projects.list_projects() == []
    project = projects.open_project()
    assert project.name == "default"
    assert project.path == paths.data_dir() / "projects" / "default"
    assert projects.list_projects() == ["default"]
    meta = json.loads((project.path / "project.json").read_text())
    assert meta["name"] == "default" and meta["created"].endswith("+00:00")
    assert project.versions() == [1]
    assert project.read().soul_text == STARTER_SOUL
    assert project.read(1).soul().name == "nanochat"
    assert projects.open_project("default").versions() == [1]  # not created twice


def test_save_makes_versions_only_on_change():
    project = projects.create_project("ada", "# Ada\n")
    assert project.save_soul("# Ada\n", "") == (1, False)
    assert project.save_soul("# Ada\n", '{"tools": []}') == (1, False)  # same interface
    assert project.save_soul("# Ada\n## Persona\nkind\n", "") == (2, True)
    assert project.save_soul("# Ada\n## Persona\nkind\n", json.dumps(TOOL)) == (3, True)
    assert project.versions() == [1, 2, 3]
    v3 = project.read("v0003")
    assert v3.interface().tools[0].name == "echo"
    assert project.read(1).soul_text == "# Ada\n"  # old versions are untouched
    folder = project.soul_dir / "v0001"
    assert not os.access(folder / "SOUL.md", os.W_OK) or os.geteuid() == 0


def test_invalid_save_writes_nothing():
    project = projects.create_project("bad", "# Bad\n")
    with pytest.raises(UserError, match=r"SOUL\.md, line 1"):
        project.save_soul("no name", "")
    bad = {"tools": [{"name": "x", "description": "d", "parameters": {"type": "nope"}}]}
    with pytest.raises(UserError, match="parameters: not a valid JSON Schema"):
        project.save_soul("# Bad\n", json.dumps(bad))
    assert project.versions() == [1]
    assert sorted(p.name for p in project.soul_dir.iterdir()) == ["v0001"]


def test_diff_between_versions():
    project = projects.create_project("d", "# D\n## Persona\nold\n")
    project.save_soul("# D\n## Persona\nnew\n", json.dumps(TOOL))
    text = project.diff("v1", "v2")
    expected = "".join(
        difflib.unified_diff(
            ["# D\n", "## Persona\n", "old\n"],
            ["# D\n", "## Persona\n", "new\n"],
            "v0001/SOUL.md",
            "v0002/SOUL.md",
        )
    )
    assert text.startswith(expected)
    assert "+++ v0002/interface.json" in text and '+      "name": "echo",' in text
    assert project.diff(2, 2) == ""
    with pytest.raises(UserError, match="no SOUL version v0009"):
        project.diff(1, 9)
    with pytest.raises(UserError, match="not a SOUL version"):
        project.diff("x", 1)


def test_names_and_missing_projects():
    with pytest.raises(UserError, match="not a valid project name"):
        projects.create_project("../evil")
    projects.create_project("one")
    with pytest.raises(UserError, match="already exists"):
        projects.create_project("one")
    with pytest.raises(UserError, match="no project named 'two'") as info:
        projects.open_project("two")
    assert "one" in info.value.remediation


def test_datasets_and_prefabs():
    project = projects.open_project()
    assert project.datasets() == []
    (project.datasets_dir / "b.jsonl").write_text("{}\n")
    (project.datasets_dir / "a.jsonl").write_text("{}\n")
    (project.datasets_dir / "notes.txt").write_text("x")
    assert [p.name for p in project.datasets()] == ["a.jsonl", "b.jsonl"]
    assert project.dataset("a") == project.dataset("a.jsonl") == project.datasets_dir / "a.jsonl"
    with pytest.raises(UserError, match="no dataset 'c'"):
        project.dataset("c")
    path = project.save_prefab("mine", "name: mine\n")
    assert project.prefabs() == [path] and path.read_text() == "name: mine\n"
    assert [p.name for p in path.parent.iterdir()] == ["mine.yaml"]  # no temp file left


def test_crashed_save_leaves_no_version(monkeypatch):
    project = projects.create_project("crash", "# C\n")

    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(projects.os, "rename", boom)
    with pytest.raises(KeyboardInterrupt):
        project.save_soul("# C2\n", "")
    assert sorted(p.name for p in project.soul_dir.iterdir()) == ["v0001"]
