"""config/estimates.py memory estimate vs XLA's compiled memory analysis on tiny shapes (CPU, fp32),
the optimizer-state bytes exactly, and the compatibility matrix's per-device memory column."""

from __future__ import annotations

import json
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
    assert machine.cached_profile() is None  # nothing measured yet
    measured = machine.load_profile(now=NOW, busy=lambda: 0.0)  # a quiet machine, as told
    assert measured.source == "measured"
    assert measured.cores == len(os.sched_getaffinity(0))
    assert measured.flops > 1e8 and measured.memory > 2**30
    assert machine.read_record()["flops"] == measured.flops  # cached for the next start
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


# ---------------------------------------------------------------- the CPU rate's cache (issue 25.18)

NOW = 1_900_000_000.0  # a hand clock: the cache's age is NOW - measured_at
DAY = 86400.0


def cached_record(**changes):
    """A good cached measurement for this machine, taken an hour before NOW, with changes."""
    from nanochat_tui.config import machine

    record = {
        "key": machine.cache_key(),
        "flops": 1e9,
        "low": 0.9e9,
        "high": 1.1e9,
        "measured_at": NOW - 3600,
        "busy": 0.1,
    }
    record.update(changes)
    path = machine.cache_dir() / machine.CACHE_FILE
    path.write_text(json.dumps(record))
    return path


def never_measure():
    raise AssertionError("re-measured a good cached rate")


@pytest.fixture
def no_profile_env(monkeypatch):
    from nanochat_tui.config import machine

    monkeypatch.delenv(machine.PROFILE_ENV)
    machine.cpu_profile.cache_clear()


def test_a_good_cached_rate_is_used_as_is(no_profile_env):
    from nanochat_tui.config import machine

    cached_record()
    profile = machine.load_profile(now=NOW, busy=lambda: 0.0, measure=never_measure)
    assert profile.source == "cached" and profile.flops == 1e9 and profile.stale == ""
    assert (profile.flops_low, profile.flops_high) == (0.9e9, 1.1e9)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"measured_at": NOW - 8 * DAY}, "measured 8 days ago"),
        ({"busy": 0.9}, "busy (load 0.9 per core)"),
        ({"low": 0.5e9, "high": 1.2e9}, "spread wide"),
        ({"key": {"cores": 1, "cpu": "other", "numpy": "1.0", "jax": "0.1"}}, "another CPU"),
    ],
)
def test_old_busy_noisy_or_foreign_rates_are_measured_again(no_profile_env, changes, why):
    """Regression (issue 25.18): the rate was measured once, under whatever load, and cached
    forever; `tiny` showed 27 min on a machine that trains it in a few."""
    from nanochat_tui.config import machine

    path = cached_record(**changes)
    assert why in machine.cached_profile(now=NOW).stale  # what the Config pane says meanwhile
    profile = machine.load_profile(now=NOW, busy=lambda: 0.2)  # the real matmul, timed again
    assert (
        profile.source == "measured"
        and profile.flops != 1e9
        and profile.stale in ("", "its timings spread wide")
    )
    assert profile.flops_low <= profile.flops <= profile.flops_high
    saved = json.loads(path.read_text())
    assert saved["measured_at"] == NOW and saved["busy"] == 0.2 and saved["flops"] == profile.flops


def test_a_busy_measurement_is_flagged_and_kept_only_until_a_quieter_one(no_profile_env):
    from nanochat_tui.config import machine

    rates = iter([[2e9, 2e9, 2e9], [3e9, 3e9, 3e9], [4e9, 4e9, 4e9]])
    first = machine.load_profile(now=NOW, busy=lambda: 1.5, measure=lambda: next(rates))
    assert first.source == "measured" and "busy (load 1.5 per core)" in first.stale
    # measured again at the next start; the machine is busier still: the first one stays
    second = machine.load_profile(now=NOW + 60, busy=lambda: 2.0, measure=lambda: next(rates))
    assert second.source == "cached" and second.flops == 2e9 and second.stale
    # quieter: this one replaces it and is no longer flagged
    third = machine.load_profile(now=NOW + 120, busy=lambda: 0.1, measure=lambda: next(rates))
    assert third.source == "measured" and third.flops == 4e9 and third.stale == ""
    assert machine.cached_profile(now=NOW + 180).stale == ""


def test_the_cpu_row_is_a_range_from_the_rate_spread_and_the_mfu_range():
    from rich.console import Console

    from nanochat_tui.config.estimates import CPU_MFU, CPU_MFU_RANGE, flops_per_token, total_tokens
    from nanochat_tui.config.machine import CpuProfile
    from nanochat_tui.tui.screens.config import estimates_renderable, human_range

    tiny = load_prefab("tiny")
    cpu = CpuProfile(2, 8 * 2**30, 1.5e11, "cached", 1.2e11, 1.6e11)
    row = compatibility_matrix(tiny, cpu)[0]
    flops = flops_per_token(tiny.model) * total_tokens(tiny)
    assert row.hours == pytest.approx(flops / (1.5e11 * CPU_MFU) / 3600)
    assert row.hours_low == pytest.approx(flops / (1.6e11 * CPU_MFU_RANGE[1]) / 3600)
    assert row.hours_high == pytest.approx(flops / (1.2e11 * CPU_MFU_RANGE[0]) / 3600)
    console = Console(width=70, record=True)
    console.print(estimates_renderable(tiny, cpu))
    assert "CPU (2 cores)  2–4m    $0" in console.export_text()
    accelerator = compatibility_matrix(tiny, cpu)[1]  # an assumed MFU only: one value
    assert accelerator.hours_low == accelerator.hours == accelerator.hours_high
    assert human_range(50 / 60, 1.2) == "50m–1.2h" and human_range(0.5, 0.5) == "30m"
