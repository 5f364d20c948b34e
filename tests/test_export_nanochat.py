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


def test_export_refuses_what_neither_nanochat_revision_holds(tmp_path, capsys):
    """RECIPE_2026's 8-token window is not nanochat's ceil(seq/4 to 128) rule."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(tmp_path))
        new = make_run(tmp_path, "new", RECIPE_2026)
    assert main(["export", str(new), str(tmp_path / "o"), "--format", "nanochat"]) == 2
    err = capsys.readouterr().err
    assert "as a nanochat checkpoint" in err and "model.smear=True" in err  # not 2025
    assert "(2026) GPT cannot represent model.short_window=8" in err
    assert not (tmp_path / "o").exists()


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


# nanochat's current GPT (karpathy/nanochat@92d63d4, nanochat/gpt.py) for n_layer 3, n_embd 96,
# n_head 3, n_kv_head 1, vocab 300 (rows padded to 320): every state_dict key and its shape
NANOCHAT_2026_KEYS = {
    "transformer.wte.weight": (320, 96),
    "lm_head.weight": (320, 96),
    "resid_lambdas": (3,),
    "x0_lambdas": (3,),
    "smear_gate.weight": (1, 24),
    "smear_lambda": (1,),
    "backout_lambda": (1,),
    "value_embeds.0.weight": (320, 32),
    "value_embeds.2.weight": (320, 32),
    "transformer.h.0.attn.ve_gate.weight": (1, 12),
    "transformer.h.2.attn.ve_gate.weight": (1, 12),
    **{
        f"transformer.h.{i}.{k}.weight": shape
        for i in range(3)
        for k, shape in {
            "attn.c_q": (96, 96),
            "attn.c_k": (32, 96),
            "attn.c_v": (32, 96),
            "attn.c_proj": (96, 96),
            "mlp.c_fc": (384, 96),
            "mlp.c_proj": (96, 384),
        }.items()
    },
}
NANOCHAT_2026_CONFIG = {"sequence_len": 2048, "vocab_size": 300, "n_layer": 3, "n_head": 3}
NANOCHAT_2026_CONFIG |= {"n_kv_head": 1, "n_embd": 96, "window_pattern": "SSSL"}


def _our_2026_weights(vocab: int = 300) -> dict[str, np.ndarray]:
    from flax import nnx

    from nanochat_tui.config.schema import ModelConfig
    from nanochat_tui.export.source import param_arrays
    from nanochat_tui.jax_engine.model import GPT

    cfg = ModelConfig(
        depth=3, aspect_ratio=32, head_dim=32, n_kv_head=1, vocab_size=vocab, recipe="nanochat-2026"
    )
    return param_arrays(GPT(cfg, rngs=nnx.Rngs(0)))


def test_2026_names_and_shapes_are_nanochats_both_ways():
    from nanochat_tui.export.nanochat_names import from_nanochat, revision_of, to_nanochat

    ours = _our_2026_weights()
    theirs = to_nanochat(ours, 3, "2026", 300)
    assert {k: v.shape for k, v in theirs.items()} == NANOCHAT_2026_KEYS
    assert revision_of(theirs, NANOCHAT_2026_CONFIG) == ("2026", [])
    back = from_nanochat(theirs, 3, "2026")
    assert back.keys() == ours.keys()
    for key, value in ours.items():
        np.testing.assert_array_equal(back[key], value)
    # nanochat pads to 64 rows; a model padded further is cropped, one unpadded gets zero rows
    wider = {**ours, "wte": np.ones((384, 96), np.float32)}
    assert to_nanochat(wider, 3, "2026", 300)["transformer.wte.weight"].shape == (320, 96)


def test_a_2026_meta_becomes_the_2026_recipe_with_nanochats_windows():
    from nanochat_tui.export.importer import build_config

    config = build_config({"model_config": NANOCHAT_2026_CONFIG}, 320, "imp", "2026")
    m = config.model.resolved()
    assert (m.rope_base, m.qk_scale, m.softcap, m.padded_vocab) == (100000.0, 1.2, 15.0, 320)
    assert m.value_embeds and m.residual_scalars and m.smear and m.backout
    # ceil(2048 / 4 / 128) * 128 (nanochat's comment says 768; its expression gives 512)
    assert m.window_sizes() == [512, 512, None]


def test_what_no_recipe_represents_is_named():
    from nanochat_tui.export.nanochat_names import revision_of

    ones, zeros = np.ones(2, np.float32), np.zeros(2, np.float32)
    old = {"resid_lambdas": ones, "x0_lambdas": zeros}
    assert revision_of(old, {"window_pattern": "L"}) == ("2025", [])
    assert revision_of({"resid_lambdas": ones * 1.1}, {"window_pattern": "SSSL"})[1] == [
        "learned residual scalars (resid_lambdas) without the rest of 2026",
        "sliding windows (window_pattern SSSL) without the rest of 2026",
    ]
    (why,) = revision_of({"value_embeds.1.weight": zeros, "backout_lambda": zeros}, {})[1]
    assert why.startswith("an intermediate nanochat revision: backout (backout_lambda), value ")
    assert "without smear (smear_gate, smear_lambda), value-embedding gates" in why
    full = {k: np.zeros(s, np.float32) for k, s in NANOCHAT_2026_KEYS.items()}
    wide_gate = {**full, "transformer.h.0.attn.ve_gate.weight": np.zeros((1, 32), np.float32)}
    assert revision_of(wide_gate, NANOCHAT_2026_CONFIG)[1] == [
        "value-embedding gates reading [12, 32] channels (ours read 12)"
    ]
    (why,) = revision_of({**full, "transformer.h.0.attn.lora.weight": zeros}, {})[1]
    assert "newer than commit 92d63d4 (transformer.h.0.attn.lora.weight)" in why


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
