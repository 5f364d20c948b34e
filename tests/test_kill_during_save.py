"""SIGKILL during a checkpoint save loses nothing: two seeded trials of
benchmarks/kill_during_save.py (which runs more) through the public CLI."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "kill_during_save.py"


@pytest.mark.slow
def test_kill_9_during_save_loses_nothing_and_resume_is_exact(tmp_path):
    spec = importlib.util.spec_from_file_location("kill_during_save", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    trials = bench.run_trials(tmp_path, seeds=[1, 2], jobs=2)
    for t in trials:
        if isinstance(t, AssertionError):
            raise t
    assert all(t.exact for t in trials)
    assert any(t.killed_during_save for t in trials), trials  # a kill did land inside a save
