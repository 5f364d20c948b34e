"""Closed-form size, FLOPs and memory of an MoE config: total vs active (no JAX).

Per layer the dense MLP's ``8·d²`` matmul params become ``E·2·d·H`` expert params (``H`` =
``expert_dim``), a ``d·E`` router, ``2·d·H`` for a shared expert and ``E`` bias entries. A token
runs ``k`` experts, so *active* params count ``k·2·d·H`` of them. FLOPs per token follow
nanochat's ``6·(matmul params) + attention`` on the active params; ``padded_flops_per_token`` is
what this implementation computes (every expert runs its full capacity ``C``: the capacity factor
times the active expert FLOPs, ``E/k`` times them when dropless).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nanochat_tui.bundled.moe.config import MoEConfig
from nanochat_tui.config.estimates import flops_per_token, memory_estimate, num_params


@dataclass(frozen=True)
class MoEEstimate:
    total_params: int
    active_params: int
    flops_per_token: float  # active
    total_flops_per_token: float  # if every expert ran on every token
    padded_flops_per_token: float  # what the capacity-padded implementation computes
    memory_bytes: int  # one device, one training step


def moe_estimates(config: Any, moe: MoEConfig | None = None) -> MoEEstimate:
    """Estimates for ``config`` with ``plugins.moe`` (or ``moe``) replacing every MLP."""
    moe = moe or MoEConfig.model_validate(config.plugins.get("moe", {}))
    m = config.model
    d, depth, e, k = m.model_dim, m.depth, moe.num_experts, moe.top_k
    h = moe.hidden(d)
    dense_mlp = 8 * d * d
    expert = 2 * d * h
    shared = expert if moe.shared_expert else 0
    router = d * e
    bias = e if moe.bias_balancing else 0
    base = num_params(m)
    total = base + depth * (e * expert + router + shared + bias - dense_mlp)
    active = base + depth * (k * expert + router + shared + bias - dense_mlp)
    fpt = flops_per_token(m)
    active_fpt = fpt + 6 * depth * (k * expert + router + shared - dense_mlp)
    all_fpt = fpt + 6 * depth * (e * expert + router + shared - dense_mlp)
    padding = moe.capacity_factor if moe.capacity_factor > 0 else e / k
    padded_fpt = fpt + 6 * depth * (padding * k * expert + router + shared - dense_mlp)
    dense_mem = memory_estimate(config)
    extra = total - base
    accum = 2 if config.grad_accum_steps > 1 else 1
    tokens = config.train.device_batch_size * m.sequence_len
    dispatch = int(tokens * padding * k * (d + h) * 4 * depth)  # expert buffers kept for backward
    memory = dense_mem.total + extra * 4 * (1 + accum + 1) + dispatch
    return MoEEstimate(total, active, active_fpt, all_fpt, padded_fpt, memory)
