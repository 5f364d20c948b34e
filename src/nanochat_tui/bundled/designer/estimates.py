"""Params, FLOPs per token and memory per device of a design (the engine's closed-form estimates,
checked against JAX's compiled cost and memory analysis in tests/test_model_blocks.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nanochat_tui.bundled.designer.design import Design, compile_config
from nanochat_tui.config.estimates import flops_per_token, memory_estimate, num_params


@dataclass(frozen=True)
class DesignEstimate:
    params: int
    active_params: int  # = params unless MoE
    flops_per_token: float  # forward + backward, active
    memory: dict[str, int]  # "cpu" | "gpu" -> bytes one device needs for a training step


def estimate(design: Design, base: Any) -> DesignEstimate:
    """Estimates of ``design`` trained with ``base``'s batch settings (UserError when invalid)."""
    config = compile_config(design, base)
    if "moe" in config.plugins:
        from nanochat_tui.bundled.moe.estimates import moe_estimates

        e = moe_estimates(config)
        memory = {"cpu": e.memory_bytes, "gpu": e.memory_bytes}
        return DesignEstimate(e.total_params, e.active_params, e.flops_per_token, memory)
    n = num_params(config.model)
    memory = {p: memory_estimate(config, p).total for p in ("cpu", "gpu")}
    return DesignEstimate(n, n, flops_per_token(config.model), memory)
