"""config/estimates.py memory estimate vs XLA's compiled memory analysis on tiny shapes (CPU, fp32),
the optimizer-state bytes exactly, and the compatibility matrix's per-device memory column."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from nanochat_tui.config import load_prefab
from nanochat_tui.config.estimates import compatibility_matrix, memory_estimate, optimizer_bytes
from nanochat_tui.config.schema import Config
from nanochat_tui.jax_engine.model import GPT, loss_fn
from nanochat_tui.jax_engine.optim import build_optimizer

TOLERANCE = 0.25  # the estimate is within ±25% of XLA's argument + output + temp bytes


def config(batch: int, **model) -> Config:
    seq = model["sequence_len"]
    return Config.model_validate(
        {"model": model, "train": {"device_batch_size": batch, "total_batch_size": batch * seq}}
    )


SHAPES = [
    (4, dict(depth=2, aspect_ratio=64, head_dim=32, sequence_len=64, vocab_size=512)),
    (4, dict(depth=4, aspect_ratio=64, head_dim=64, sequence_len=256, vocab_size=1024)),
    (
        2,
        dict(
            depth=2,
            aspect_ratio=128,
            head_dim=64,
            sequence_len=256,
            vocab_size=2048,
            recipe="nanochat-2026",
            loss_chunk=128,
        ),
    ),
]


@pytest.mark.parametrize(("batch", "model"), SHAPES)
def test_memory_estimate_agrees_with_compiled_analysis(batch, model):
    cfg = config(batch, **model)
    gpt = GPT(cfg.model, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(gpt, nnx.Param, ...)
    x = jnp.zeros((batch, cfg.model.sequence_len), jnp.int32)

    def grads(p, x):
        return jax.grad(lambda q: loss_fn(nnx.merge(graphdef, q, rest), x, x))(p)

    m = jax.jit(grads).lower(params, x).compile().memory_analysis()
    real = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
    e = memory_estimate(cfg, "cpu")
    est = e.params + e.grads + e.activations + e.logits
    assert abs(est / real - 1) < TOLERANCE, (est, real)


@pytest.mark.parametrize("recipe", ["nanochat-2025", "nanochat-2026"])
def test_optimizer_bytes_are_exact(recipe):
    cfg = config(
        2, depth=2, aspect_ratio=64, head_dim=32, sequence_len=64, vocab_size=300, recipe=recipe
    )
    gpt = GPT(cfg.model, rngs=nnx.Rngs(0))
    state = build_optimizer(gpt, cfg).init(nnx.state(gpt, nnx.Param))
    # NorMuon's per-neuron second moments are a rounding error next to the rest
    big = sum(a.nbytes for a in jax.tree.leaves(state) if a.ndim >= 2 and min(a.shape) > 1)
    assert (
        big
        == optimizer_bytes(cfg.model)
        - 4
        * sum(
            a.size
            for a in jax.tree.leaves(nnx.state(gpt, nnx.Param))
            if a.ndim < 2 or min(a.shape) == 1
        )
        * 2
    )


def test_matrix_shows_memory_and_fit():
    rows = {r.accelerator: r for r in compatibility_matrix(load_prefab("tiny"))}
    assert all(r.fits and r.memory > 0 for r in rows.values())
    big = {r.accelerator: r for r in compatibility_matrix(load_prefab("thousand"))}
    assert big["1× H100"].memory > rows["1× H100"].memory


def test_cpu_row_uses_this_machines_cores_and_measured_rate(monkeypatch):
    from nanochat_tui.config import machine

    monkeypatch.delenv(machine.PROFILE_ENV)
    machine.cpu_profile.cache_clear()
    measured = machine.cpu_profile()
    assert measured.source == "measured"
    assert measured.cores == len(os.sched_getaffinity(0))
    assert measured.flops > 1e8 and measured.memory > 2**30
    machine.cpu_profile.cache_clear()
    again = machine.cpu_profile()  # read back from the cache, not re-measured
    assert again.source == "cached" and again.flops == measured.flops
    cpu = compatibility_matrix(load_prefab("tiny"))[0]
    assert cpu.accelerator == f"CPU ({measured.cores} core{'s' if measured.cores > 1 else ''})"


def test_cpu_row_time_follows_the_profile(monkeypatch):
    from nanochat_tui.config import machine

    rows = []
    for profile in ("cores=2,flops=1e11,memory=8G", "cores=16,flops=4e11,memory=64G"):
        monkeypatch.setenv(machine.PROFILE_ENV, profile)
        machine.cpu_profile.cache_clear()
        rows.append(compatibility_matrix(load_prefab("tiny"))[0])
    assert [r.accelerator for r in rows] == ["CPU (2 cores)", "CPU (16 cores)"]
    assert rows[0].hours == pytest.approx(4 * rows[1].hours)
    assert rows[0].device_memory == 8 * 2**30 and rows[1].cost == pytest.approx(
        rows[1].hours * 16 * machine.PRICE_PER_CORE_HOUR
    )


@pytest.mark.parametrize("bad", ["cores=x", "gpus=2", "cores=0,flops=1e9", "flops"])
def test_bad_cpu_profile_is_one_message(monkeypatch, bad):
    from nanochat_tui.config import machine
    from nanochat_tui.errors import UserError

    monkeypatch.setenv(machine.PROFILE_ENV, bad)
    machine.cpu_profile.cache_clear()
    with pytest.raises(UserError, match=machine.PROFILE_ENV):
        machine.cpu_profile()
