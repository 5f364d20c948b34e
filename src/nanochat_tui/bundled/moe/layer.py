"""The MoE MLP: a top-k router over ReLU² experts with capacity, aux losses and routing stats.

For ``N`` tokens ``x [N, D]``, ``E`` experts, top-``k``:

1. router logits ``z = x·W_r`` (fp32), probabilities ``p = softmax(z)``
2. each token picks the ``k`` experts with the largest ``p + b`` (``b``: the aux-loss-free
   balancing bias, zero when off — it steers the choice only, never the gate weights)
3. gates = the chosen ``p``, renormalised to sum to 1 when ``k > 1`` (``k = 1``: Switch's raw p)
4. capacity ``C`` per expert (config.py); assignments claim slots first-choice first, then in
   token order; those past ``C`` are dropped (the token keeps its residual stream only)
5. kept assignments are scattered into ``[E, C, D]``, every expert runs as one batched matmul
   ``relu(x·W1)²·W2``, and outputs are gathered back weighted by the gates; an optional shared
   expert sees every token
6. Switch load-balancing loss ``E·Σ_e f_e·P_e`` (``f_e``: share of the ``N·k`` assignments made to
   e before dropping, ``P_e``: mean router probability) and router z-loss ``mean(logsumexp(z)²)``

``route`` is the pure function (tests compare it with NumPy); ``MoEMLP`` keeps each forward's
statistics in ``MoEStat`` variables, which the plugin's loss terms and step metrics read.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from nanochat_tui.bundled.moe.config import MoEConfig

STAT_NAMES = ("lb_loss", "z_loss", "entropy", "max_violation", "dropped", "dead")


class Routing(NamedTuple):
    experts: jax.Array  # int32 [N, k] chosen experts
    gates: jax.Array  # [N, k] combine weights (0 where dropped)
    slot: jax.Array  # int32 [N, k] position in the expert's buffer
    keep: jax.Array  # bool [N, k] fits within capacity
    load: jax.Array  # [E] share of the N·k assignments (before dropping)
    lb_loss: jax.Array
    z_loss: jax.Array
    entropy: jax.Array  # mean router entropy / log E, in [0, 1]
    max_violation: jax.Array  # (max_e count_e − mean) / mean
    dropped: jax.Array  # share of assignments dropped
    dead: jax.Array  # experts that received no assignment


def route(logits: jax.Array, bias: jax.Array | None, top_k: int, capacity: int) -> Routing:
    """Routing decisions and aux losses for router ``logits [N, E]`` (see the module docstring)."""
    logits = logits.astype(jnp.float32)
    n, e = logits.shape
    probs = jax.nn.softmax(logits, axis=-1)
    score = probs if bias is None else probs + jax.lax.stop_gradient(bias)
    _, experts = jax.lax.top_k(score, top_k)
    chosen = jnp.take_along_axis(probs, experts, axis=-1)
    gates = chosen / jnp.sum(chosen, axis=-1, keepdims=True) if top_k > 1 else chosen
    onehot = jax.nn.one_hot(experts, e, dtype=jnp.int32)  # [N, k, E]
    order = jnp.transpose(onehot, (1, 0, 2)).reshape(top_k * n, e)  # first choices first
    position = jnp.cumsum(order, axis=0) - 1
    slot = jnp.sum(position * order, axis=-1).reshape(top_k, n).T  # [N, k]
    keep = slot < capacity
    counts = jnp.sum(onehot, axis=(0, 1)).astype(jnp.float32)
    load = counts / (n * top_k)
    lb_loss = e * jnp.sum(jax.lax.stop_gradient(load) * jnp.mean(probs, axis=0))
    z_loss = jnp.mean(jnp.square(jax.nn.logsumexp(logits, axis=-1)))
    entropy = -jnp.sum(probs * jnp.log(jnp.maximum(probs, 1e-20)), axis=-1)
    mean_count = n * top_k / e
    return Routing(
        experts,
        jnp.where(keep, gates, 0.0),
        slot,
        keep,
        load,
        lb_loss,
        z_loss,
        jnp.mean(entropy) / math.log(e),
        (jnp.max(counts) - mean_count) / mean_count,
        1.0 - jnp.mean(keep.astype(jnp.float32)),
        jnp.sum(counts == 0).astype(jnp.float32),
    )


class MoEStat(nnx.Variable):
    """Routing statistics of the last forward (not a parameter; never checkpointed)."""


def _expert_init(d_in: int, d_out: int, zero: bool):
    std = 1.0 / math.sqrt(d_in) * min(1.0, math.sqrt(d_out / d_in))

    def init(key, shape, dtype=jnp.float32):
        if zero:
            return jnp.zeros(shape, dtype)
        return std * jax.random.normal(key, shape, dtype)

    return init


class MoEMLP(nnx.Module):
    """Drop-in replacement for the dense MLP: ``x [B, T, D] -> [B, T, D]``."""

    def __init__(self, cfg, moe: MoEConfig, *, rngs: nnx.Rngs, dtype=jnp.float32) -> None:
        d, h, e = cfg.model_dim, moe.hidden(cfg.model_dim), moe.num_experts
        self.moe, self.dtype = moe, dtype
        # nanochat's init: c_fc normal(1/√fan_in · min(1, √(out/in))), the output projection zero
        self.w_fc = nnx.Param(_expert_init(d, h, False)(rngs.params(), (e, d, h)))
        self.w_proj = nnx.Param(jnp.zeros((e, h, d), jnp.float32))
        self.router = nnx.Param(
            _expert_init(d, e, False)(rngs.params(), (d, e)) * 0.1  # near-uniform routing at start
        )
        self.bias = nnx.Param(jnp.zeros((e,), jnp.float32)) if moe.bias_balancing else None
        if moe.shared_expert:
            self.shared_fc = nnx.Param(_expert_init(d, h, False)(rngs.params(), (d, h)))
            self.shared_proj = nnx.Param(jnp.zeros((h, d), jnp.float32))
        else:
            self.shared_fc = self.shared_proj = None
        self.load = MoEStat(jnp.zeros((e,), jnp.float32))
        self.stats = MoEStat(jnp.zeros((len(STAT_NAMES),), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        n, e = x.shape[0], self.moe.num_experts
        cap = self.moe.capacity(n)
        logits = x.astype(jnp.float32) @ self.router[...]
        bias = None if self.bias is None else self.bias[...]
        r = route(logits, bias, self.moe.top_k, cap)
        # scatter kept assignments into [E·C (+1 trash row), D]; dropped ones land in the trash
        flat = jnp.where(r.keep, r.experts * cap + r.slot, e * cap).reshape(-1)
        tokens = jnp.repeat(x, self.moe.top_k, axis=0)
        buf = jnp.zeros((e * cap + 1, x.shape[-1]), x.dtype).at[flat].add(tokens)
        buf = buf[:-1].reshape(e, cap, -1)
        w_fc = self.w_fc[...].astype(self.dtype)
        w_proj = self.w_proj[...].astype(self.dtype)
        hidden = jnp.square(jax.nn.relu(jnp.einsum("ecd,edh->ech", buf, w_fc)))
        out = jnp.einsum("ech,ehd->ecd", hidden, w_proj).reshape(e * cap, -1)
        out = jnp.concatenate([out, jnp.zeros((1, out.shape[-1]), out.dtype)])
        picked = out[flat].reshape(n, self.moe.top_k, -1)
        y = jnp.sum(picked * r.gates[..., None].astype(picked.dtype), axis=1)
        if self.shared_fc is not None:
            sh = jnp.square(jax.nn.relu(x @ self.shared_fc[...].astype(self.dtype)))
            y = y + sh @ self.shared_proj[...].astype(self.dtype)
        self.load.set_value(r.load)
        self.stats.set_value(
            jnp.stack([r.lb_loss, r.z_loss, r.entropy, r.max_violation, r.dropped, r.dead])
        )
        return y.astype(x.dtype).reshape(shape)
