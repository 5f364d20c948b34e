"""``export --format onnx``: a valid graph with dynamic batch and sequence, its numbers (onnx's
NumPy reference evaluator), and the message when onnx is missing. onnxruntime parity is in
test_export_heavy.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from export_helpers import RECIPE_2026, SEQUENCES, jax_logits, make_run
from nanochat_tui.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("onnx-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(home))
        return make_run(home, "onnx26", RECIPE_2026)


@pytest.fixture(scope="module")
def onnx_dir(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "out"
    assert main(["export", str(run_dir), str(out), "--format", "onnx"]) == 0
    return out


def test_graph_is_valid_with_dynamic_axes(onnx_dir):
    import onnx

    assert {p.name for p in onnx_dir.iterdir()} == {"model.onnx", "tokenizer.json"}
    onnx.checker.check_model(str(onnx_dir / "model.onnx"), full_check=True)
    model = onnx.load(str(onnx_dir / "model.onnx"))
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "input_ids" and out.name == "logits"
    dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert dims == ["batch", "sequence", 500]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.INT64


def test_reference_evaluator_logits_equal_jax(onnx_dir, run_dir):
    """onnx's own NumPy evaluator runs the graph (a 2026 model: GQA, windows, padded vocab)."""
    from onnx.reference import ReferenceEvaluator

    session = ReferenceEvaluator(str(onnx_dir / "model.onnx"))
    ids = SEQUENCES[1]  # 40 tokens: past the 8-token window
    (got,) = session.run(["logits"], {"input_ids": np.array([ids, ids[::-1]], np.int64)})
    assert got.shape == (2, 40, 500)
    assert np.abs(got[0] - jax_logits(run_dir, ids)).max() <= 1e-4
    assert np.abs(got[1] - jax_logits(run_dir, ids[::-1])).max() <= 1e-4


def test_missing_onnx_names_the_extra(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)
    out = tmp_path / "out"
    assert main(["export", str(run_dir), str(out), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert "needs the onnx package" in err and "--extra export" in err
    assert not out.exists()


def test_a_designed_model_with_per_block_settings_exports(tmp_path):
    """model.blocks (heads, kv heads, head size, windows, SwiGLU, value embeddings per block) in
    ONNX: the reference evaluator's logits equal the JAX model's on a random initialisation."""
    import jax.numpy as jnp
    from flax import nnx
    from onnx.reference import ReferenceEvaluator

    from nanochat_tui.config.schema import Config
    from nanochat_tui.export.onnx_graph import build_model
    from nanochat_tui.export.source import ExportSource, param_arrays
    from nanochat_tui.jax_engine.model import GPT

    for recipe in ("nanochat-2025", "nanochat-2026"):
        model = {
            "recipe": recipe,
            "depth": 3,
            "width": 64,
            "head_dim": 16,
            "sequence_len": 32,
            "vocab_size": 300,
            "blocks": [
                {"n_head": 4, "n_kv_head": 2, "mlp": "swiglu"},
                {"n_head": 2, "value_embed": True, "window": 8},
                {"n_head": 8, "n_kv_head": 1, "mlp_hidden": 96},
            ],
        }
        config = Config.model_validate({"model": model})
        gpt = GPT(config.model, rngs=nnx.Rngs(3))
        source = ExportSource(tmp_path, config, None, {}, param_arrays(gpt))
        session = ReferenceEvaluator(build_model(source))
        ids = np.array([SEQUENCES[1][:24], SEQUENCES[1][:24][::-1]], np.int64) % 300
        (got,) = session.run(["logits"], {"input_ids": ids})
        want = np.asarray(gpt(jnp.asarray(ids, jnp.int32)))
        assert got.shape == want.shape == (2, 24, 300)
        assert np.abs(got - want).max() <= 1e-4, recipe
