"""Training processes run on mimalloc (allocator.py): the environment a child gets, and a real
``nanochat-tui run`` process that re-executes itself onto it (its run_start says so)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import tiny_overrides
from nanochat_tui import allocator

LIB = allocator.library()
needs_lib = pytest.mark.skipif(LIB is None, reason="mimalloc ships for Linux only")


@needs_lib
def test_child_environment_preloads_mimalloc_once():
    env = allocator.environment({"PATH": "/bin"})
    assert env["LD_PRELOAD"] == str(LIB) and env[allocator.APPLIED_ENV] == "1"
    assert allocator.environment(env) == env  # already there: unchanged
    other = allocator.environment({"LD_PRELOAD": "/x/libother.so"})
    assert other["LD_PRELOAD"] == f"{LIB}:/x/libother.so"
    assert allocator.environment({allocator.CHOICE_ENV: "system"}) == {
        allocator.CHOICE_ENV: "system"
    }


def test_this_test_process_reports_its_allocator():
    expected = "mimalloc" if "mimalloc" in os.environ.get("LD_PRELOAD", "") else "system"
    assert allocator.in_use() == expected


@needs_lib
def test_nanochat_tui_run_reexecutes_onto_mimalloc(tmp_path):
    script = Path(sys.executable).with_name("nanochat-tui")
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.APPLIED_ENV)}
    env.update({"NANOCHAT_TUI_RUNS": str(tmp_path)})
    env.pop(allocator.CHOICE_ENV, None)
    sets = tiny_overrides({"train.num_iterations": 1})
    argv = [str(script), "run", "tiny", "--name", "alloc", "--quiet"]
    for item in sets:
        argv += ["--set", item]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in (tmp_path / "alloc" / "events.jsonl").open()]
    start = next(e for e in events if e["type"] == "run_start")
    assert start["allocator"] == "mimalloc"
