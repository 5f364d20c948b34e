"""The MoE plugin: routing, capacity drop and both aux losses against a NumPy reference; the layer's
output against a per-token loop; batched Muon against per-expert Muon; a tiny MoE run through the
orchestrator (plugin hooks) that trains, carries expert loads in its step events and resumes
exactly; checkpoint compatibility on MoE fields."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from helpers import tiny
from nanochat_tui.bundled.moe.config import MoEConfig
from nanochat_tui.bundled.moe.layer import MoEMLP, route
from nanochat_tui.config import ConfigError, load_config


def np_route(logits: np.ndarray, bias: np.ndarray | None, k: int, capacity: int) -> dict:
    """Independent reference: plain loops over tokens and choices."""
    n, e = logits.shape
    z = logits - logits.max(-1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    score = probs + (0 if bias is None else bias)
    experts = np.argsort(-score, axis=-1, kind="stable")[:, :k]
    chosen = np.take_along_axis(probs, experts, -1)
    gates = chosen / chosen.sum(-1, keepdims=True) if k > 1 else chosen
    filled = np.zeros(e, int)
    slot = np.zeros((n, k), int)
    for j in range(k):  # first choices claim slots first, then token order
        for t in range(n):
            slot[t, j] = filled[experts[t, j]]
            filled[experts[t, j]] += 1
    keep = slot < capacity
    counts = np.bincount(experts.ravel(), minlength=e).astype(float)
    load = counts / (n * k)
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    entropy = -(probs * np.log(probs)).sum(-1).mean() / math.log(e)
    mean = n * k / e
    return {
        "experts": experts,
        "gates": np.where(keep, gates, 0.0),
        "keep": keep,
        "load": load,
        "lb_loss": e * np.sum(load * probs.mean(0)),
        "z_loss": np.mean(lse**2),
        "entropy": entropy,
        "max_violation": (counts.max() - mean) / mean,
        "dropped": 1 - keep.mean(),
        "dead": float((counts == 0).sum()),
    }


@pytest.mark.parametrize(
    ("k", "capacity", "use_bias"), [(2, 3, False), (1, 2, True), (2, 16, False)]
)
def test_routing_capacity_and_aux_losses_match_numpy(k, capacity, use_bias):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(16, 4)).astype(np.float32) * 2
    logits[:, 3] -= 4.0  # expert 3 is rarely chosen
    bias = np.array([0.0, 0.3, -0.2, 0.0], np.float32) if use_bias else None
    got = route(jnp.asarray(logits), None if bias is None else jnp.asarray(bias), k, capacity)
    want = np_route(logits, bias, k, capacity)
    np.testing.assert_array_equal(np.asarray(got.experts), want["experts"])
    np.testing.assert_array_equal(np.asarray(got.keep), want["keep"])
    if capacity < 16:
        assert not want["keep"].all()  # the case really drops
    for name in (
        "gates",
        "load",
        "lb_loss",
        "z_loss",
        "entropy",
        "max_violation",
        "dropped",
        "dead",
    ):
        np.testing.assert_allclose(np.asarray(getattr(got, name)), want[name], rtol=1e-5, atol=1e-6)


def test_moe_layer_output_matches_a_per_token_loop():
    class Cfg:
        model_dim = 16

    moe = MoEConfig(num_experts=4, top_k=2, expert_dim=8, capacity_factor=1.0, shared_expert=True)
    layer = MoEMLP(Cfg(), moe, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    for name in ("w_proj", "shared_proj"):  # zero-initialised; make the output non-trivial
        var = getattr(layer, name)
        var.set_value(jnp.asarray(rng.normal(size=var[...].shape).astype(np.float32)))
    x = rng.normal(size=(2, 5, 16)).astype(np.float32)
    y = np.asarray(layer(jnp.asarray(x)))
    flat = x.reshape(-1, 16)
    w_fc, w_proj, router = (
        np.asarray(getattr(layer, n)[...]) for n in ("w_fc", "w_proj", "router")
    )
    r = np_route(flat @ router, None, 2, moe.capacity(10))
    relu2 = lambda a: np.square(np.maximum(a, 0))  # noqa: E731
    want = np.zeros_like(flat)
    for t in range(10):
        for j in range(2):
            e = r["experts"][t, j]
            want[t] += r["gates"][t, j] * (relu2(flat[t] @ w_fc[e]) @ w_proj[e])
        want[t] += relu2(flat[t] @ np.asarray(layer.shared_fc[...])) @ np.asarray(
            layer.shared_proj[...]
        )
    assert not r["keep"].all()
    np.testing.assert_allclose(y.reshape(-1, 16), want, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(np.asarray(layer.load[...]), r["load"], rtol=1e-6)


def test_batched_muon_over_experts_equals_muon_per_expert():
    from nanochat_tui.jax_engine.muon import nanochat_muon

    tx = nanochat_muon(0.02, lambda c: 0.9, lambda c: 0.1, polar_express=True, normuon=True)
    key = jax.random.key(3)
    w = jax.random.normal(key, (3, 16, 8))
    g = jax.random.normal(jax.random.key(4), (3, 16, 8))
    state = tx.init({"w": w})
    update, _ = tx.update({"w": g}, state, {"w": w})
    for e in range(3):
        s1 = tx.init({"w": w[e]})
        u1, _ = tx.update({"w": g[e]}, s1, {"w": w[e]})
        np.testing.assert_allclose(
            np.asarray(update["w"][e]), np.asarray(u1["w"]), rtol=1e-5, atol=1e-6
        )


def test_moe_section_is_validated_on_load():
    config = load_config("tiny", ["plugins.moe.num_experts=4"])
    assert config.plugins["moe"]["top_k"] == 2 and config.plugins["moe"]["capacity_factor"] == 1.25
    with pytest.raises(ConfigError, match="top_k 8 is more than num_experts 4"):
        load_config("tiny", ["plugins.moe.num_experts=4", "plugins.moe.top_k=8"])


def test_estimates_count_active_and_total_params():
    from nanochat_tui.bundled.moe.estimates import moe_estimates
    from nanochat_tui.config.estimates import num_params

    config = load_config("tiny", ["plugins.moe.num_experts=8", "plugins.moe.top_k=2"])
    est = moe_estimates(config)
    d, depth = config.model.model_dim, config.model.depth
    hidden = 4 * d // 2
    per_layer_router = d * 8
    assert est.total_params == num_params(config.model) + depth * (
        8 * 2 * d * hidden - 8 * d * d + per_layer_router
    )
    assert est.active_params == num_params(config.model) + depth * per_layer_router
    assert est.flops_per_token < est.total_flops_per_token


# ---------------------------------------------------------------- a real run


def _moe_config(**changes):
    moe = {"num_experts": 4, "top_k": 2, "bias_balancing": True, "capacity_factor": 1.0}
    return load_config(
        "tiny",
        {**tiny({"train.num_iterations": 6, **changes}), "plugins.moe": moe},
    )


def _run(config, run_dir, resume=False, stop_at=None):
    from nanochat_tui.jax_engine.control import ControlInbox
    from nanochat_tui.orchestrator.runner import execute

    events: list[dict] = []
    control = ControlInbox()

    def record(event):
        events.append(event)
        if event.get("type") == "step" and event.get("step") == stop_at:
            control.stop()

    result = execute(config, run_dir, resume=resume, control=control, callbacks=[record])
    return result, events


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("NANOCHAT_TUI_HOME", str(tmp_path_factory.mktemp("home")))
    result, events = _run(_moe_config(), tmp_path_factory.mktemp("runs") / "moe")
    yield result, events, mp
    mp.undo()


def test_tiny_moe_run_trains_and_reports_expert_loads(straight):
    result, events, _ = straight
    assert result.status == "finished"
    steps = [e for e in events if e["type"] == "step"]
    assert len(steps) == 6 and steps[-1]["loss"] < steps[0]["loss"]
    aux = steps[-1]["aux"]
    loads = [aux[f"moe/L0/E{j}"] for j in range(4)]
    assert math.isclose(sum(loads), 1.0, rel_tol=1e-5)
    for key in ("moe/L0/entropy", "moe/L0/max_violation", "moe/L0/dead", "moe/L0/dropped",
                "moe/lb_loss", "moe/z_loss"):  # fmt: skip
        assert key in aux and math.isfinite(aux[key])
    assert 0.5 < aux["moe/lb_loss"] < 4  # E·Σ f·P: 1 when uniform, E when collapsed


def test_tiny_moe_run_resumes_exactly(straight, tmp_path):
    from nanochat_tui import rundir

    _, ref, mp = straight
    mp.setenv("NANOCHAT_TUI_HOME", str(tmp_path / "home"))
    run_dir = tmp_path / "resumed"
    r1, first = _run(_moe_config(), run_dir, stop_at=3)
    assert r1.status == "stopped"
    meta = rundir.list_checkpoints(run_dir)[-1].meta
    assert meta["plugin_shape"]["plugins.moe.num_experts"] == 4
    r2, second = _run(_moe_config(), run_dir, resume=True)
    assert r2.status == "finished" and r2.step == 6
    losses = {e["step"]: e["loss"] for e in first + second if e["type"] == "step"}
    want = {e["step"]: e["loss"] for e in ref if e["type"] == "step"}
    assert losses == want
    # a resume with another expert count is refused before anything is written
    from nanochat_tui.errors import ResumeRefused

    other = load_config(
        "tiny",
        {
            **tiny({"train.num_iterations": 6}),
            "plugins.moe": {"num_experts": 8, "bias_balancing": True},
        },
    )
    with pytest.raises(ResumeRefused, match=r"plugins\.moe\.num_experts=4"):
        _run(other, run_dir, resume=True)


def test_chat_loads_an_moe_checkpoint_with_the_plugin_and_refuses_it_without(straight):
    import jax.numpy as jnp
    import numpy as np

    from nanochat_tui.errors import IncompatibleCheckpoint
    from nanochat_tui.jax_engine.inference import ChatModel
    from nanochat_tui.jax_engine.sample import generate
    from nanochat_tui.orchestrator.plugin_hooks import model_mlp

    result, _, _ = straight
    with pytest.raises(IncompatibleCheckpoint, match=r"plugins\.moe\.num_experts=4"):
        ChatModel.load(result.last_checkpoint)  # serve and export pass no plugin MLP

    cm = ChatModel.load(result.last_checkpoint, mlp_for=model_mlp)
    assert isinstance(cm.model.blocks[0].mlp, MoEMLP)
    prompt = cm.tokenizer.encode("def ")[:6]
    cached = list(generate(cm.model, prompt, max_new_tokens=8, temperature=0.0, seed=0))
    # reference: greedy from full forward passes, no KV cache (the experts see the whole prefix)
    ids = list(prompt)
    for _ in range(len(cached)):
        logits = np.asarray(cm.model(jnp.asarray([ids], jnp.int32)))[0, -1]
        ids.append(int(np.argmax(logits)))
    assert cached == ids[len(prompt) :]


def test_eval_cli_scores_an_moe_checkpoint(straight, capsys):
    from nanochat_tui.cli import main

    result, _, _ = straight
    assert main(["eval", str(result.last_checkpoint), "--max-tokens", "4", "--tokens", "2048"]) == 0
    out = capsys.readouterr().out
    assert "bpb" in out


def test_moe_cli_prints_active_and_total(capsys):
    from nanochat_tui.cli import main

    assert main(["moe", "tiny-moe"]) == 0
    out = capsys.readouterr().out
    assert "8 experts, top-2" in out and "active" in out and "total" in out
    assert main(["moe", "tiny"]) == 2
    assert "plugins.moe.num_experts=8" in capsys.readouterr().err
