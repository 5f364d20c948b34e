"""Explicit YAML tags at every config entry point (issue 25, item 10).

``!!int 1.5``, ``!!float abc``, ``!!bool maybe``, ``!!timestamp x`` each used to escape the YAML
constructor as a bare ValueError/KeyError/AttributeError: a crash dump from the CLI, a listing
that stopped at the file, a TUI that did not open. A config holds what JSON holds, so every tag but
``!!str``/``!!int``/``!!float``/``!!bool``/``!!null`` is refused, and so is a value its tag cannot
hold: one line, exit 2, the value quoted, no crash dump.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nanochat_tui import paths
from nanochat_tui.cli import main
from nanochat_tui.config import ConfigError, load_prefab
from nanochat_tui.config.loader import parse_value, scan_prefabs

# The issue's four, then the other tags and edge values a person might try.
ISSUE = ["!!int 1.5", "!!float abc", "!!bool maybe", "!!timestamp x"]
REFUSED = [
    *ISSUE,
    "!!int 0x",
    "!!int 0x10",
    "!!int [1]",
    "!!float 1_0",
    "!!null x",
    "!!binary aGk=",
    "!!binary @@",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "!!pairs [a: 1]",
    "!!python/name:os.system",
    "!!python/object/apply:os.system [ls]",
    "!foo x",
    "!<tag:example.com,2000:x> 1",
    "!!map 5",
    "!!seq x",
    "{[1]: 2}",
    "9" * 5000,  # past Python's 4300-digit int(str) limit
]
# Tags that say what JSON already holds: the value is read, then validated as usual.
READ = {"!!int 5": 5, "!!float 1": 1.0, "!!str 5": "5", "!!bool true": True, "!!null ~": None}


def crash_dumps() -> list[Path]:
    return list((paths.data_dir() / "logs").glob("crash/*"))


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def run_program(*argv: str) -> subprocess.CompletedProcess[str]:
    """The installed console script's entry, as a user runs it."""
    code = "from nanochat_tui.cli import program; program()"
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NANOCHAT_TUI_HOME": str(paths.home_override())},
    )


def one_error_line(err: str) -> str:
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("error: "), err[:600]
    assert "Traceback" not in err and "crash dump" not in err, err[:600]
    return lines[0]


@pytest.mark.parametrize("value", REFUSED, ids=lambda v: v[:30])
def test_tagged_override_is_one_line_exit_2(value):
    code, out, err = run_main("config", "show", "tiny", "--set", f"model.depth={value}")
    line = one_error_line(err)
    assert code == 2 and out == ""
    assert "model.depth" in line and value[:20] in line  # the key and the value, quoted
    assert len(line) < 400
    assert not crash_dumps()


@pytest.mark.parametrize(("raw", "value"), READ.items())
def test_tags_json_already_holds_are_read(raw, value):
    assert parse_value(raw) == value and type(parse_value(raw)) is type(value)


def test_nan_and_inf_tags_read_then_refused_by_the_schema():
    code, _out, err = run_main("config", "show", "tiny", "--set", "optim.grad_clip=!!float .nan")
    assert code == 2 and "optim.grad_clip" in one_error_line(err) and not crash_dumps()


def test_program_refuses_issue_tags_on_run_config_show_and_control_patch(tmp_path):
    for value in ISSUE:
        for argv in (("config", "show", "tiny"), ("run", "tiny")):
            proc = run_program(*argv, "--set", f"model.depth={value}")
            line = one_error_line(proc.stderr)
            assert proc.returncode == 2, (argv, proc.stderr)
            assert f"model.depth={value!r}" in line
    run_dir = tmp_path / "ended"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("name: tiny\n")
    (run_dir / "events.jsonl").write_text(json.dumps({"type": "run_start", "time": 1.0}) + "\n")
    proc = run_program("control", str(run_dir), "patch", "optim.lr_multiplier=!!float abc")
    assert proc.returncode == 2 and "!!float needs a number (got 'abc')" in proc.stderr
    one_error_line(proc.stderr)
    assert not crash_dumps()


def test_tagged_user_prefab_is_listed_broken_and_named_on_load():
    user = paths.user_prefabs_dir()
    for i, value in enumerate(ISSUE):
        (user / f"tag{i}.yaml").write_text(f"name: tag{i}\nmodel:\n  depth: {value}\n")
    (user / "set.yaml").write_text("plugins:\n  p: !!set {a, b}\n")
    entries = {e.name: e for e in scan_prefabs()}
    assert entries["tiny"].error is None
    assert "!!int needs a whole number (got '1.5') (line 3)" in entries["tag0"].error
    assert "!!set has no place" in entries["set"].error
    proc = run_program("config", "prefabs")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("✗ broken") == 5 and "  tiny " in proc.stdout
    proc = run_program("config", "show", "tag2")
    assert proc.returncode == 2
    assert "tag2.yaml: !!bool needs true or false (got 'maybe') (line 3)" in proc.stderr
    assert not crash_dumps()
    with pytest.raises(ConfigError, match="timestamp has no place"):
        load_prefab("tag3")
