"""Closed-form size, FLOPs and wall-time estimates for a config (no JAX needed)."""

from __future__ import annotations

from dataclasses import dataclass

from nanochat_tui.config.schema import Config, ModelConfig

# Peak dense bf16 FLOP/s (fp32 for CPU, a rough per-core figure times cores).
ACCELERATORS: dict[str, tuple[float, float]] = {
    # name: (peak FLOP/s, $ per hour)
    "CPU (8 cores)": (0.5e12, 0.40),
    "1× H100": (989e12, 2.50),
    "8× H100": (8 * 989e12, 20.00),
    "TPU v5e-8": (8 * 197e12, 9.60),
    "TPU v6e-8": (8 * 918e12, 21.60),
}
ASSUMED_MFU = {"CPU (8 cores)": 0.25}
DEFAULT_MFU = 0.45


def param_counts(m: ModelConfig) -> dict[str, int]:
    d, hd = m.model_dim, m.head_dim
    attn = d * (m.n_head * hd) + 2 * d * (m.kv_heads * hd) + (m.n_head * hd) * d
    mlp = 2 * d * (4 * d)
    return {
        "embedding": m.vocab_size * d,
        "unembedding": m.vocab_size * d,
        "blocks": m.depth * (attn + mlp),
    }


def num_params(m: ModelConfig) -> int:
    return sum(param_counts(m).values())


def flops_per_token(m: ModelConfig) -> float:
    """nanochat's estimate: 6·(N − embedding) + 12·L·d·T (attention), for forward+backward."""
    n = num_params(m) - param_counts(m)["embedding"]
    return 6 * n + 12 * m.depth * m.model_dim * m.sequence_len


def num_iterations(config: Config) -> int:
    if config.train.num_iterations > 0:
        return config.train.num_iterations
    tokens = config.train.target_param_data_ratio * num_params(config.model)
    return max(1, round(tokens / config.train.total_batch_size))


def total_tokens(config: Config) -> int:
    return num_iterations(config) * config.train.total_batch_size


@dataclass(frozen=True)
class Estimate:
    accelerator: str
    hours: float
    cost: float
    mfu: float


def compatibility_matrix(config: Config) -> list[Estimate]:
    flops = flops_per_token(config.model) * total_tokens(config)
    rows = []
    for name, (peak, price) in ACCELERATORS.items():
        mfu = ASSUMED_MFU.get(name, DEFAULT_MFU)
        hours = flops / (peak * mfu) / 3600
        rows.append(Estimate(name, hours, hours * price, mfu))
    return rows
