"""Engine throughput: tokens/s, MFU and peak memory of the real jitted train step.

Times ``jax_engine.step.make_train_step`` (forward + backward + Muon/AdamW update, the same code
path as training) for a few model sizes on whatever device JAX sees, next to the TFLOP/s of a plain
matmul on that device (the roofline). If PyTorch is importable, an equivalent nanochat-style
PyTorch model (forward + backward + AdamW) is timed on the same shapes for comparison.

    uv run python benchmarks/engine_throughput.py                     # tiny,d4 on CPU; tiny,d12,d20 on GPU/TPU
    uv run python benchmarks/engine_throughput.py --configs d4 --steps 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

# name -> (model overrides, device_batch_size)
CONFIGS: dict[str, tuple[dict[str, Any], int]] = {
    "tiny": (dict(depth=2, aspect_ratio=64, head_dim=64, sequence_len=256, vocab_size=4096), 16),
    "d4": (dict(depth=4, aspect_ratio=64, head_dim=64, sequence_len=512, vocab_size=8192), 8),
    "d12": (dict(depth=12, aspect_ratio=64, head_dim=128, sequence_len=2048, vocab_size=65536), 16),
    "d20": (dict(depth=20, aspect_ratio=64, head_dim=128, sequence_len=2048, vocab_size=65536), 16),
}


def make_config(name: str, batch: int | None):
    from nanochat_tui.config.schema import Config

    if name not in CONFIGS:
        raise SystemExit(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")
    model, default_batch = CONFIGS[name]
    b = batch or default_batch
    return Config.model_validate(
        {
            "model": model,
            "train": {"device_batch_size": b, "total_batch_size": b * model["sequence_len"]},
        }
    )


def peak_memory_bytes() -> tuple[int | None, str]:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process RSS"


def bench_jax(name: str, steps: int, batch: int | None) -> dict[str, Any]:
    """Time the jitted train step for one config."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from nanochat_tui.config.estimates import flops_per_token, num_params
    from nanochat_tui.jax_engine.flops import compute_dtype, device_summary, mfu
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.optim import build_optimizer
    from nanochat_tui.jax_engine.step import make_train_step

    config = make_config(name, batch)
    m, b = config.model, config.train.device_batch_size
    dtype = compute_dtype(config)
    model = GPT(m, rngs=nnx.Rngs(0), dtype=dtype)
    optimizer = nnx.Optimizer(model, build_optimizer(model, config), wrt=nnx.Param)
    step = make_train_step(model, optimizer)
    data = jax.random.randint(
        jax.random.key(0), (b, m.sequence_len + 1), 0, m.vocab_size, jnp.int32
    )
    x, y = data[:, :-1], data[:, 1:]

    t0 = time.perf_counter()
    float(step(model, optimizer, x, y, 1.0))
    compile_s = time.perf_counter() - t0
    float(step(model, optimizer, x, y, 1.0))
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step(model, optimizer, x, y, 1.0)
    final_loss = float(loss)  # one host sync at the end
    elapsed = time.perf_counter() - t0

    tokens_per_s = b * m.sequence_len * steps / elapsed
    dev = device_summary()
    fpt = flops_per_token(m)
    mem, mem_kind = peak_memory_bytes()
    return {
        "impl": "jax",
        "config": name,
        "params": num_params(m),
        "batch": b,
        "seq": m.sequence_len,
        "dtype": jnp.dtype(dtype).name,
        "step_ms": 1000 * elapsed / steps,
        "tokens_per_s": tokens_per_s,
        "tflops": tokens_per_s * fpt / 1e12,
        "mfu": mfu(tokens_per_s, fpt, dev["peak_flops"]),
        "peak_mem_gib": mem / 2**30 if mem else None,
        "mem_kind": mem_kind,
        "compile_s": compile_s,
        "loss": final_loss,
    }


def bench_torch(name: str, steps: int, batch: int | None) -> dict[str, Any] | None:
    """nanochat-style PyTorch model (fwd+bwd+AdamW) on the same shapes; None without torch."""
    try:
        import torch
        import torch.nn.functional as F
        from torch import nn
    except ImportError:
        return None
    from nanochat_tui.config.estimates import flops_per_token, num_params

    config = make_config(name, batch)
    m, b = config.model, config.train.device_batch_size
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    amp_dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    d, hd, nh, nkv = m.model_dim, m.head_dim, m.n_head, m.kv_heads

    def rms(x):
        return F.rms_norm(x, (x.size(-1),))

    def rope(x, cos, sin):
        h = x.shape[-1] // 2
        x1, x2 = x[..., :h], x[..., h:]
        return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], -1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nn.Linear(d, nh * hd, bias=False)
            self.k = nn.Linear(d, nkv * hd, bias=False)
            self.v = nn.Linear(d, nkv * hd, bias=False)
            self.o = nn.Linear(nh * hd, d, bias=False)
            self.fc = nn.Linear(d, 4 * d, bias=False)
            self.proj = nn.Linear(4 * d, d, bias=False)

        def forward(self, x, cos, sin):
            bb, t, _ = x.shape
            h = rms(x)
            q = self.q(h).view(bb, t, nh, hd)
            k = self.k(h).view(bb, t, nkv, hd)
            v = self.v(h).view(bb, t, nkv, hd)
            q, k = rms(rope(q, cos, sin)), rms(rope(k, cos, sin))
            q, k, v = (z.transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=nh != nkv)
            x = x + self.o(y.transpose(1, 2).reshape(bb, t, -1))
            return x + self.proj(F.relu(self.fc(rms(x))).square())

    class TorchGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(m.vocab_size, d)
            self.blocks = nn.ModuleList(Block() for _ in range(m.depth))
            self.head = nn.Linear(d, m.vocab_size, bias=False)

        def forward(self, idx, targets):
            t = idx.shape[1]
            inv = 1.0 / (m.rope_base ** (torch.arange(0, hd, 2, device=idx.device).float() / hd))
            f = torch.outer(torch.arange(t, device=idx.device).float(), inv)
            cos, sin = f.cos()[None, :, None, :], f.sin()[None, :, None, :]
            x = rms(self.wte(idx))
            for blk in self.blocks:
                x = blk(x, cos, sin)
            logits = self.head(rms(x)).float()
            logits = m.softcap * torch.tanh(logits / m.softcap)
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    torch.manual_seed(0)
    model = TorchGPT().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.95), eps=1e-10)
    data = torch.randint(0, m.vocab_size, (b, m.sequence_len + 1), device=dev)
    x, y = data[:, :-1], data[:, 1:]

    def one() -> Any:
        with torch.autocast(dev, dtype=amp_dtype, enabled=dev == "cuda"):
            loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(2):
        one()
    if dev == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = one()
    final_loss = float(loss)
    elapsed = time.perf_counter() - t0
    tokens_per_s = b * m.sequence_len * steps / elapsed
    return {
        "impl": "torch",
        "config": name,
        "params": num_params(m),
        "batch": b,
        "seq": m.sequence_len,
        "dtype": str(amp_dtype).removeprefix("torch."),
        "step_ms": 1000 * elapsed / steps,
        "tokens_per_s": tokens_per_s,
        "tflops": tokens_per_s * flops_per_token(m) / 1e12,
        "mfu": None,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else None,
        "mem_kind": "device" if dev == "cuda" else "",
        "compile_s": None,
        "loss": final_loss,
    }


def matmul_row() -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    from nanochat_tui.jax_engine.flops import matmul_flops

    on_accel = jax.default_backend() != "cpu"
    n, dtype = (8192, jnp.bfloat16) if on_accel else (1024, jnp.float32)
    return {
        "n": n,
        "dtype": jnp.dtype(dtype).name,
        "tflops": matmul_flops(n, dtype, repeats=10) / 1e12,
    }


def fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=None, help=f"comma list of {', '.join(CONFIGS)}")
    p.add_argument("--steps", type=int, default=10, help="timed steps per config (after 2 warm-up)")
    p.add_argument("--batch", type=int, default=None, help="override device batch size")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    args = p.parse_args(argv)

    import jax

    from nanochat_tui.jax_engine.flops import device_summary

    dev = device_summary()
    default = "tiny,d4" if jax.default_backend() == "cpu" else "tiny,d12,d20"
    names = [c.strip() for c in (args.configs or default).split(",") if c.strip()]
    peak = dev["peak_flops"]
    print(
        f"device: {dev['device_kind']} ×{dev['count']} ({dev['platform']}), "
        f"peak {fmt(peak and peak / 1e12, '.1f')} TFLOP/s"
        + (" (measured fp32 matmul)" if dev["platform"] == "cpu" else " (bf16 datasheet)")
    )
    mm = matmul_row()
    print(f"roofline: {mm['n']}×{mm['n']} {mm['dtype']} matmul {mm['tflops']:.2f} TFLOP/s")

    rows = []
    for name in names:
        rows.append(bench_jax(name, args.steps, args.batch))
        if not args.no_torch:
            t = bench_torch(name, args.steps, args.batch)
            if t:
                rows.append(t)
    head = f"{'impl':6} {'config':6} {'params':>9} {'B×T':>10} {'dtype':9} {'ms/step':>9} "
    head += f"{'tok/s':>10} {'TFLOP/s':>8} {'MFU':>6} {'peak mem':>14} {'compile':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        mem = "-" if r["peak_mem_gib"] is None else f"{r['peak_mem_gib']:.2f}G {r['mem_kind'][:6]}"
        print(
            f"{r['impl']:6} {r['config']:6} {r['params'] / 1e6:8.1f}M {r['batch']:>4}×{r['seq']:<5} "
            f"{r['dtype']:9} {r['step_ms']:9.1f} {r['tokens_per_s']:10,.0f} {r['tflops']:8.3f} "
            f"{fmt(r['mfu'] and 100 * r['mfu'], '5.1f'):>5}% {mem:>14} {fmt(r['compile_s'], '7.1f'):>7}s"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": dev, "matmul": mm, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
