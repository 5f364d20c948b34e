"""SIGKILL during a checkpoint save loses nothing: two seeded trials of
benchmarks/kill_during_save.py (which runs more) through the public CLI."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "kill_during_save.py"


@pytest.fixture(scope="module")
def kill_bench():
    spec = importlib.util.spec_from_file_location("kill_during_save", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def home_and_reference(kill_bench, tmp_path_factory):
    home = tmp_path_factory.mktemp("kill-home")
    return home, kill_bench.reference(home)


def test_kill_9_during_save_loses_nothing_and_resume_is_exact(kill_bench, home_and_reference):
    home, ref = home_and_reference
    assert sorted(ref) == list(range(1, kill_bench.STEPS + 1))
    trials = [kill_bench.trial(home, seed, ref) for seed in (1, 2)]
    assert all(t.exact for t in trials)
    assert any(t.killed_during_save for t in trials), trials  # the kill did hit a save
