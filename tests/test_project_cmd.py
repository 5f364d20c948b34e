"""`nanochat-tui project ...` through the real CLI entry point."""

from __future__ import annotations

import json

from nanochat_tui import projects
from nanochat_tui.cli import main


def test_list_show_create(capsys):
    assert main(["project", "list"]) == 0
    assert capsys.readouterr().out.startswith("default              v0001")
    assert main(["project", "create", "ada"]) == 0
    assert main(["project", "show", "-p", "ada"]) == 0
    out = capsys.readouterr().out
    assert "showing v0001" in out and "# nanochat" in out and "tools: python" in out
    assert main(["project", "create", "ada"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["project", "soul-diff", "v1"]) == 2
    assert "usage: nanochat-tui project soul-diff A B" in capsys.readouterr().err


def test_soul_diff(capsys):
    project = projects.open_project()
    text = project.read().soul_text.replace("# nanochat", "# Ada")
    project.save_soul(text, "")
    assert main(["project", "soul-diff", "v1", "v2"]) == 0
    out = capsys.readouterr().out
    assert "-# nanochat\n+# Ada\n" in out and out.startswith("--- v0001/SOUL.md")
    assert main(["project", "soul-diff", "2", "2"]) == 0
    assert capsys.readouterr().out == "no differences (2 vs 2)\n"


def test_datasets_report_bad_lines(capsys):
    project = projects.open_project()
    good = json.dumps({"prompt": "Hi", "completion": "Hello."})
    (project.datasets_dir / "chat.jsonl").write_text(f"{good}\n{{oops\n")
    assert main(["project", "datasets"]) == 1
    out = capsys.readouterr().out
    assert "chat: 1 chat rows, 0 preference rows, 1 bad lines" in out
    assert "length in chars (no tokenizer given): min 13" in out
    assert "  line 2: malformed JSON" in out
    assert main(["project", "datasets", "chat", "--json", "--max-len", "10"]) == 1
    row = json.loads(capsys.readouterr().out)
    assert row["issues"] == 2 and row["errors"][0]["message"].startswith("over-long: 13 char")
    assert main(["project", "datasets", "nope"]) == 2
    assert "no dataset 'nope'" in capsys.readouterr().err
