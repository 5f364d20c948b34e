"""Pipelines: a prefab's steps run in order as sibling runs, each from the previous step's last
checkpoint, with the lineage recorded; bad steps are refused before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import tiny
from nanochat_tui.errors import UserError


def prefab(tmp_path: Path, pipeline: list) -> Path:
    data: dict = {"name": "pipe", "run": {"runs_dir": str(tmp_path / "runs")}}
    for key, value in tiny({"train.num_iterations": 3}).items():
        section, field = key.split(".")
        data.setdefault(section, {})[field] = value
    data["pipeline"] = pipeline
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_cli_pipeline_pretrain_then_sft(tmp_path: Path, capsys):
    from nanochat_tui.cli import main
    from nanochat_tui.jax_engine.checkpoint import read_meta
    from nanochat_tui.orchestrator.runner import load_run_config

    path = prefab(
        tmp_path,
        [
            {"stage": "pretrain", "name": "base"},
            {"stage": "sft", "set": {"train.num_iterations": 2, "data.val_fraction": 0.05}},
        ],
    )
    assert main(["run", str(path), "--name", "p", "--quiet"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    base, sft = tmp_path / "runs" / "p.1-base", tmp_path / "runs" / "p.2-sft"
    assert "pipeline p: pretrain → sft" in out and "pipeline finished" in out
    base_ckpt = base / "checkpoints" / "3"
    assert read_meta(base_ckpt)["step"] == 3
    sft_config = load_run_config(sft)
    assert sft_config.train.stage == "sft" and sft_config.train.num_iterations == 2
    assert Path(sft_config.run.init_from) == base_ckpt  # lineage: the parent checkpoint
    assert not sft_config.pipeline
    record = json.loads((sft / "run.json").read_text())
    assert record["pipeline"] == {
        "name": "p", "index": 2, "of": 2, "stage": "sft", "parent": str(base_ckpt),
    }  # fmt: skip
    assert read_meta(sft / "checkpoints" / "2")["stage"] == "sft"
    assert (sft / "tokenizer.json").read_text() == (base / "tokenizer.json").read_text()
    # the lineage (Runs pane, runs --lineage): what each run trained on, recorded at its start
    import hashlib

    from nanochat_tui.jax_engine.corpus import corpus_fingerprint
    from nanochat_tui.orchestrator.lineage import resolve

    root, child = resolve(sft, tmp_path / "runs")
    assert (root.name, root.stage, child.stage, child.from_step) == (
        "p.1-base",
        "pretrain",
        "sft",
        3,
    )
    fingerprint = corpus_fingerprint(load_run_config(base).data).encode()
    assert root.dataset.source == "embedded stdlib corpus" and root.dataset.rows > 1
    assert root.dataset.hash == hashlib.sha256(fingerprint).hexdigest()[:12]
    assert child.dataset.source.startswith("the embedded chat set (SOUL default/1)")
    assert child.dataset.rows > 100 and len(child.dataset.hash) == 12


def test_bad_pipelines_refused_before_running(tmp_path: Path):
    from nanochat_tui.config import load_config
    from nanochat_tui.config.loader import ConfigError
    from nanochat_tui.orchestrator.pipeline import plan

    with pytest.raises(ConfigError, match="unknown stage 'rlhf'"):
        load_config(str(prefab(tmp_path, [{"stage": "rlhf"}])))
    config = load_config(str(prefab(tmp_path, [{"stage": "pretrain", "set": {"train.nope": 1}}])))
    with pytest.raises(UserError, match="pipeline step 1"):
        plan(config, "q")
    config = load_config(
        str(
            prefab(
                tmp_path, [{"stage": "pretrain"}, {"stage": "sft", "set": {"run.init_from": "x"}}]
            )
        )
    )
    with pytest.raises(UserError, match="starts from the previous step"):
        plan(config, "q")
    (tmp_path / "runs" / "q.1-pretrain").mkdir(parents=True)
    (tmp_path / "runs" / "q.1-pretrain" / "events.jsonl").write_text("")
    config = load_config(str(prefab(tmp_path, [{"stage": "pretrain"}])))
    with pytest.raises(UserError, match="already exists"):
        plan(config, "q")
    assert not (tmp_path / "runs" / "q.2-sft").exists()
