"""A training stage added from outside the package: tests/toy_stage (two files) installed as a
distribution with one entry point; ``train.stage: count`` then validates and trains through the
real ``train()``, and is refused with the registered names without the plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import Recorder, install, tiny
from nanochat_tui import paths, rundir
from nanochat_tui.config import ConfigError, load_config
from nanochat_tui.errors import UserError
from nanochat_tui.plugin_host import get_registry, reset_registry

TOY = Path(__file__).resolve().parent / "toy_stage"


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    """tests/toy_stage installed as the distribution ``toy-stage`` (entry point ``toy``)."""
    site = tmp_path / "site"
    install(site, "toy-stage", "0.1.0", {"toy": "toy_stage:register"})
    monkeypatch.syspath_prepend(str(TOY.parent))
    monkeypatch.syspath_prepend(str(site))
    reset_registry()
    yield
    reset_registry()


def test_the_toy_stage_is_two_files_and_one_entry_point():
    assert sorted(p.name for p in TOY.glob("*.py")) == ["__init__.py", "task.py"]


def test_without_the_plugin_the_stage_is_refused_with_the_registered_ones():
    reset_registry()
    with pytest.raises(ConfigError, match="unknown stage 'count'; use one of pretrain, sft, dpo"):
        load_config("tiny", tiny({"train.stage": "count"}))
    from nanochat_tui.jax_engine.tasks import get_task

    with pytest.raises(UserError, match="unknown training stage 'count'"):
        get_task("count")


def test_a_plugin_stage_trains_through_the_real_train(toy_plugin, tmp_path):
    from nanochat_tui.jax_engine.train import train

    registry = get_registry()
    assert registry.plugins["toy"].registered == ["stage count"]
    config = load_config(
        "tiny", tiny({"train.stage": "count", "train.num_iterations": 3, "train.eval_every": 1})
    )
    run_dir = tmp_path / "run"
    rec = Recorder()
    result = train(config, run_dir, rec)
    assert result.status == "finished", result
    (start,) = rec.of("run_start")
    assert start["stage"] == "count" and start["dataset"]["source"] == "counting"
    assert [e["step"] for e in rec.of("step")] == [1, 2, 3]
    evals = rec.of("eval")
    assert [e["step"] for e in evals] == [1, 2, 3] and all(e["count_loss"] > 0 for e in evals)
    (end,) = rec.of("run_end")
    assert set(end["metrics"]) == {"count_loss"}  # the stage's own headline
    assert rundir.read_meta(result.last_checkpoint)["stage"] == "count"


def test_a_broken_plugin_stage_stops_the_run_at_start_with_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "badstage.py").write_text(
        "def register(registry):\n"
        "    registry.add_stage('wrong', 'toy_stage.task:PERIOD')\n"
        "    registry.add_stage('missing', 'no_such_module_xyz:Task')\n"
    )
    install(tmp_path, "badstage", "1.0", {"badstage": "badstage:register"})
    monkeypatch.syspath_prepend(str(TOY.parent))
    monkeypatch.syspath_prepend(str(tmp_path))
    reset_registry()
    try:
        from nanochat_tui.cli import main

        for stage, why in (
            ("wrong", "stage wrong: toy_stage.task:PERIOD is not a Task subclass whose stage is"),
            ("missing", "stage missing: no_such_module_xyz:Task did not load (ModuleNotFoundError"),
        ):
            argv = ["run", "tiny", "--name", stage, "--set", f"train.stage={stage}"]
            assert main([*argv, *(f"--set={k}={v}" for k, v in tiny().items())]) == 2
            err = capsys.readouterr().err
            assert why in err and "nanochat-tui plugins" in err and "Traceback" not in err, err
            assert not (paths.runs_dir() / stage / rundir.TOKENIZER).exists()  # refused first
    finally:
        reset_registry()
