"""Shared by the export tests: a run directory holding one checkpoint of a tiny model with
random (non-zero) weights, written without training, and its reference logits."""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

TINY_MODEL: dict[str, Any] = {
    "model.depth": 2,
    "model.aspect_ratio": 64,
    "model.head_dim": 32,
    "model.sequence_len": 64,
    "model.vocab_size": 512,
    "data.max_chars": 60_000,
    "data.tokenizer_chars": 50_000,
    "train.device_batch_size": 4,
    "train.total_batch_size": 256,
}
# every nanochat-2026 switch, grouped-query attention, a sliding window the sequences exceed,
# and a vocabulary padded to a multiple of 64 (500 -> 512)
RECIPE_2026: dict[str, Any] = {
    "model.recipe": "nanochat-2026",
    "model.n_kv_head": 2,
    "model.short_window": 8,
    "model.vocab_size": 500,
}

# token sequences exercising the whole context, different lengths, and the special tokens
SEQUENCES = ([0, 5, 17, 200, 499, 3], list(range(40)), [0] + [7, 300, 12] * 21)

# chat conversations covering system, tool calls and their outputs, special-token text
CONVERSATIONS = [
    [{"role": "user", "content": "Hi there"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?  "},
        {"role": "assistant", "content": "4\n"},
        {"role": "user", "content": "And <|user_end|> 3+3?"},
    ],
    [
        {"role": "user", "content": "compute"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me see. "},
                {"type": "python", "text": "6*7"},
            ],
        },
        {"role": "tool", "content": "42"},
        {"role": "assistant", "content": "It is 42."},
        {"role": "user", "content": "thanks"},
        {"role": "assistant", "content": "ok"},
    ],
]


def make_run(parent: Path, name: str = "exp", changes: dict[str, Any] | None = None) -> Path:
    """A run dir with one checkpoint (step 10) of random weights (std 0.3)."""
    import jax
    from flax import nnx

    from nanochat_tui.config import load_config
    from nanochat_tui.export.run_writer import write_run
    from nanochat_tui.export.source import param_arrays
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.tokenizer import get_tokenizer

    config = load_config("tiny", {**TINY_MODEL, **(changes or {})})
    tokenizer = get_tokenizer(config)
    model = GPT(config.model, rngs=nnx.Rngs(0))
    weights = param_arrays(model)
    keys = jax.random.split(jax.random.key(len(name)), len(weights))
    noisy = {
        k: np.asarray(jax.random.normal(key, v.shape)) * 0.3
        for key, (k, v) in zip(keys, sorted(weights.items()), strict=True)
    }
    run_dir = parent / name
    write_run(run_dir, config, tokenizer, noisy, step=10, stage="pretrain", origin={"path": "test"})
    return run_dir


@functools.cache
def _loaded(run_dir: Path):
    from nanochat_tui.jax_engine.inference import ChatModel

    return ChatModel.load(run_dir)


def jax_logits(run_dir: Path, ids: list[int]) -> np.ndarray:
    """fp32 logits ``[T, V]`` of the run's latest checkpoint for one sequence."""
    import jax.numpy as jnp

    return np.asarray(_loaded(run_dir).model(jnp.asarray([ids], jnp.int32)))[0]


def require(*modules: str) -> None:
    """Skip unless every module imports; with NANOCHAT_TUI_REQUIRE_HEAVY=1 (CI) fail instead."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return
    why = f"needs {', '.join(missing)} (the export-check group and CPU torch: see docs/export.md)"
    if os.environ.get("NANOCHAT_TUI_REQUIRE_HEAVY") == "1":
        pytest.fail(why)
    pytest.skip(why)
