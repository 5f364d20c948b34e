"""nanochat's format without torch or tiktoken: tokenizer.pkl both ways, the restricted
unpickler, refusals and messages for export and import, the Checkpoints pane marker. The
.pt round trip and a stock checkpoint's import are in test_export_heavy.py."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from export_helpers import RECIPE_2026, TINY_MODEL, make_run
from nanochat_tui.cli import main
from nanochat_tui.errors import UserError

TEXTS = [
    "Hello, wörld! 123 4567  \n\n  tabs\t",
    "def f(x):\n    return x ** 2\n",
    "日本語",
    " a" * 30,
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("nanochat-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(home))
        return make_run(home / "runs", "nc")


def test_tokenizer_pkl_round_trip_encodes_the_same(run_dir, tmp_path):
    from nanochat_tui.export.tiktoken_pkl import ranks_of, read_pkl, tokenizer_from_ranks, write_pkl
    from nanochat_tui.jax_engine.tokenizer import SPLIT_PATTERN, Tokenizer

    ours = Tokenizer.load(run_dir / "tokenizer.json")
    ranks, specials = ranks_of(ours)
    assert len(ranks) + len(specials) == ours.vocab_size
    assert specials["<|bos|>"] == ours.bos_id
    write_pkl(tmp_path / "tokenizer.pkl", SPLIT_PATTERN, ranks, specials, "rustbpe")
    pat, ranks2, specials2 = read_pkl(tmp_path / "tokenizer.pkl")
    assert (pat, ranks2, specials2) == (SPLIT_PATTERN, ranks, specials)
    back = tokenizer_from_ranks(pat, ranks2, specials2)
    for text in TEXTS:
        assert back.encode(text) == ours.encode(text)
        assert back.decode(ours.encode(text)) == text
    assert back.special("<|assistant_end|>") == ours.special("<|assistant_end|>")


def test_tokenizer_pkl_reader_runs_nothing(tmp_path):
    from nanochat_tui.export.tiktoken_pkl import read_pkl

    class Boom:
        def __reduce__(self):
            return (print, ("side effect",))

    bad = tmp_path / "tokenizer.pkl"
    bad.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(UserError, match=r"unexpected object builtins\.print"):
        read_pkl(bad)
    bad.write_bytes(b"not a pickle")
    with pytest.raises(UserError, match=r"not a nanochat tokenizer\.pkl"):
        read_pkl(bad)


def test_export_without_torch_says_how_to_install(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)
    out = tmp_path / "out"
    assert main(["export", str(run_dir), str(out), "--format", "nanochat"]) == 2
    err = capsys.readouterr().err
    assert "torch is not installed" in err and "uv pip install" in err
    assert not out.exists()


def test_export_refuses_a_2026_model(tmp_path, capsys):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(tmp_path))
        new = make_run(tmp_path, "new", RECIPE_2026)
    assert main(["export", str(new), str(tmp_path / "o"), "--format", "nanochat"]) == 2
    err = capsys.readouterr().err
    assert "as a nanochat checkpoint" in err and "model.smear=True" in err


def test_import_bad_input_messages(run_dir, tmp_path, monkeypatch, capsys):
    assert main(["import", str(tmp_path), str(tmp_path / "run")]) == 2
    assert "has no meta_<step>.json" in capsys.readouterr().err
    folder = tmp_path / "base_checkpoints" / "d2"
    folder.mkdir(parents=True)
    (folder / "meta_000005.json").write_text(json.dumps({"step": 5}))
    assert main(["import", str(folder), str(tmp_path / "run")]) == 2
    assert "model_000005.pt is missing" in capsys.readouterr().err
    (folder / "model_000005.pt").write_bytes(b"")
    monkeypatch.delenv("NANOCHAT_BASE_DIR", raising=False)
    assert main(["import", str(folder), str(tmp_path / "run"), "--step", "7"]) == 2
    assert "has no step 7" in capsys.readouterr().err
    assert main(["import", str(folder), str(tmp_path / "run")]) == 2
    assert "has no model_config" in capsys.readouterr().err
    meta = {"step": 5, "model_config": {"sequence_len": 64, "vocab_size": 512, "n_layer": 2}}
    meta["model_config"] |= {"n_head": 4, "n_kv_head": 4, "n_embd": 128}
    (folder / "meta_000005.json").write_text(json.dumps(meta))
    assert main(["import", str(folder), str(tmp_path / "run")]) == 2
    assert "no tokenizer found" in capsys.readouterr().err
    (folder / "tokenizer.json").write_text((run_dir / "tokenizer.json").read_text())
    monkeypatch.setitem(sys.modules, "torch", None)
    assert main(["import", str(folder), str(tmp_path / "run")]) == 2
    assert "torch is not installed" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_later_nanochat_features_are_named():
    from nanochat_tui.export.importer import unsupported

    ones, zeros = np.ones(2, np.float32), np.zeros(2, np.float32)
    assert unsupported({"resid_lambdas": ones, "x0_lambdas": zeros}, {"window_pattern": "L"}) == []
    found = unsupported(
        {
            "value_embeds.1.weight": zeros,
            "transformer.h.1.attn.ve_gate.weight": zeros,
            "smear_gate.weight": zeros,
            "resid_lambdas": ones * 1.1,
        },
        {"window_pattern": "SSSL"},
    )
    assert found == [
        "smear (smear_gate)",
        "value embeddings (value_embeds.*)",
        "value-embedding gates (attn.ve_gate)",
        "learned residual scalars (resid_lambdas)",
        "sliding-window attention (window_pattern SSSL)",
    ]


def test_checkpoints_pane_marks_imported_runs(run_dir):
    from nanochat_tui.config import load_config
    from nanochat_tui.tui.screens.checkpoint_rows import discover

    rows = discover(load_config("tiny"), runs_dir=run_dir.parent, nanochat_base=run_dir)
    (row,) = rows
    assert row.stage == "pretrain·imported" and row.meta["reason"] == "import"
    assert {p.field for p in row.problems} == {"heads", "sequence", "vocab"}  # tiny differs


def test_an_imported_run_starts_sft(run_dir, tmp_path):
    """run_writer's run directory (what import writes) is a valid ``run.init_from``: SFT loads
    its weights and its tokenizer and trains."""
    from nanochat_tui.config import load_config
    from nanochat_tui.jax_engine.train import train

    events: list[dict] = []
    config = load_config(
        "tiny",
        {
            **TINY_MODEL,
            "train.stage": "sft",
            "run.init_from": str(run_dir),
            "train.num_iterations": 2,
            "train.eval_every": 0,
            "train.sample_every": 0,
            "train.save_every": 0,
        },
    )
    result = train(config, tmp_path / "sft", events.append)
    assert result.status == "finished"
    logs = [e["message"] for e in events if e["type"] == "log"]
    assert any(m.startswith("initialised weights from") and "nc" in m for m in logs)
    assert (tmp_path / "sft" / "tokenizer.json").read_text() == (
        run_dir / "tokenizer.json"
    ).read_text()


def test_unrepresentable_shapes_and_bad_weights_are_refused(run_dir, tmp_path):
    from nanochat_tui.config import load_config
    from nanochat_tui.export.importer import build_config
    from nanochat_tui.export.run_writer import write_run
    from nanochat_tui.export.source import load_source

    meta = {"model_config": {"sequence_len": 64, "vocab_size": 512, "n_layer": 3}}
    meta["model_config"] |= {"n_head": 4, "n_kv_head": 4, "n_embd": 100}
    with pytest.raises(UserError, match="has no nanochat-tui equivalent"):
        build_config(meta, 512, "x")
    with pytest.raises(UserError, match="512 rows for a vocabulary of 300"):
        build_config(meta | {"model_config": meta["model_config"] | {"vocab_size": 300}}, 512, "x")

    source = load_source(run_dir)
    weights = dict(source.weights)
    weights["lm_head"] = weights["lm_head"][:, :10]
    with pytest.raises(UserError, match=r"lm_head has shape \(128, 10\)"):
        write_run(tmp_path / "r", source.config, source.tokenizer, weights, step=1, stage="sft")
    del weights["lm_head"]
    with pytest.raises(UserError, match="no weights for lm_head"):
        write_run(tmp_path / "r", load_config("tiny"), source.tokenizer, weights, step=1, stage="x")
    assert not (tmp_path / "r").exists()
