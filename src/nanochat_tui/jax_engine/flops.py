"""What device we are on, how fast it could go, and which compute dtype to use.

MFU = achieved FLOP/s ÷ ``peak_flops``. FLOPs per token come from ``config/estimates.py``
(``flops_per_token``). Accelerator peaks are dense bf16 datasheet numbers; for a CPU there is no
datasheet, so the peak is a measured fp32 matmul rate (the roofline a model step could reach).
"""

from __future__ import annotations

import functools
import time
from typing import Any

# (substring of device_kind, lower-case) -> peak dense bf16 FLOP/s, most specific first.
PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("h200", 989e12),
    ("h100", 989e12),
    ("gh200", 989e12),
    ("b200", 2250e12),
    ("a100", 312e12),
    ("l40s", 362e12),
    ("a10g", 125e12),
    ("l4", 121e12),
    ("v100", 125e12),
    ("v6 lite", 918e12),
    ("v6e", 918e12),
    ("v5 lite", 197e12),
    ("v5e", 197e12),
    ("v5p", 459e12),
    ("v5", 459e12),
    ("v4", 275e12),
)


def peak_flops(device: Any) -> float | None:
    """Peak FLOP/s of one ``jax.Device`` (None for an accelerator we do not know)."""
    if device.platform == "cpu":
        return measured_matmul_flops()
    kind = str(getattr(device, "device_kind", "")).lower()
    for key, flops in PEAK_FLOPS:
        if key in kind:
            return flops
    return None


def matmul_flops(n: int = 1024, dtype: Any = None, repeats: int = 5) -> float:
    """Measured FLOP/s of an ``n×n @ n×n`` matmul on the default device (best of ``repeats``)."""
    import jax
    import jax.numpy as jnp

    dtype = dtype or jnp.float32
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    mm = jax.jit(lambda x, y: x @ y)
    mm(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        mm(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


@functools.cache
def measured_matmul_flops() -> float:
    """fp32 matmul FLOP/s of the CPU (measured once per process)."""
    return matmul_flops(1024)


def device_brief() -> dict[str, Any]:
    """``{platform, device_kind, count}`` for the devices JAX sees (cheap: no peak measurement)."""
    import jax

    devices = jax.devices()
    d = devices[0]
    return {
        "platform": d.platform,
        "device_kind": str(getattr(d, "device_kind", d.platform)),
        "count": len(devices),
    }


def device_summary() -> dict[str, Any]:
    """``device_brief()`` plus ``peak_flops`` (per device; measured once on a CPU)."""
    import jax

    return {**device_brief(), "peak_flops": peak_flops(jax.devices()[0])}


def compute_dtype(config: Any) -> Any:
    """``train.dtype`` if set, else bf16 on GPU/TPU and fp32 on CPU."""
    import jax
    import jax.numpy as jnp

    choice = config.train.dtype
    if choice == "float32":
        return jnp.float32
    if choice == "bfloat16":
        return jnp.bfloat16
    return jnp.bfloat16 if jax.default_backend() in ("gpu", "tpu") else jnp.float32


def mfu(
    tokens_per_s: float, flops_per_token: float, peak: float | None, devices: int = 1
) -> float | None:
    """Model FLOPs utilisation in [0, 1] (None when the peak is unknown)."""
    if not peak:
        return None
    return tokens_per_s * flops_per_token / (peak * devices)
