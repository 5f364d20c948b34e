"""A PyTorch nanochat-architecture train step, for side-by-side throughput comparison.

This is the yardstick the JAX engine is measured against on the same hardware: the same model
(rotary, QK-norm, parameter-free RMSNorm, ReLU² MLP, untied embeddings, 15·tanh softcap, GQA) and the
same optimizer split (Muon for block matrices, AdamW for embedding and lm head), in eager PyTorch
as nanochat runs it (optionally torch.compile'd, as nanochat's base_train does).

Run with any Python that has torch (it is not a project dependency):
    python3 benchmarks/torch_reference.py --depth 2 --aspect-ratio 64 --head-dim 64 \
        --seq 256 --vocab 4096 --batch 16 --steps 20 [--compile] [--recipe 2026 --lr-scale S]

``--recipe 2026`` runs nanochat's current model and optimizer instead (torch_recipe2026.py: value
embeddings, scalars, smear, backout, SSSL windows, Polar Express + NorMuon + cautious weight decay,
per-group AdamW); ``--lr-scale`` is its batch-size lr factor √(B/2^19).
Prints one JSON line: {"tokens_per_s": ..., "step_s": ..., "params": ..., "loss": ...}.

With ``--init params.npz`` (the JAX engine's parameters under their flat nnx paths, as
benchmarks/loss_parity.py writes them) both recipes start from those weights instead of their own
random init. With ``--data batches.npz`` (arrays ``x``/``y`` int32[N, B, T] and optionally ``val_x``/``val_y``,
written by benchmarks/loss_parity.py) it trains on those N batches instead of random tokens and adds
``losses`` (every step) and ``val_loss`` to the JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F
from torch import nn


def rms(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos + b * sin, b * cos - a * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, n_head: int, n_kv: int, head_dim: int) -> None:
        super().__init__()
        self.n_head, self.n_kv, self.head_dim = n_head, n_kv, head_dim
        self.q = nn.Linear(dim, n_head * head_dim, bias=False)
        self.k = nn.Linear(dim, n_kv * head_dim, bias=False)
        self.v = nn.Linear(dim, n_kv * head_dim, bias=False)
        self.proj = nn.Linear(n_head * head_dim, dim, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_head, self.head_dim)
        k = self.k(x).view(B, T, self.n_kv, self.head_dim)
        v = self.v(x).view(B, T, self.n_kv, self.head_dim)
        q, k = rms(rotate(q, cos, sin)), rms(rotate(k, cos, sin))
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=self.n_kv != self.n_head
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, -1))


class Block(nn.Module):
    def __init__(self, dim, n_head, n_kv, head_dim):
        super().__init__()
        self.attn = Attention(dim, n_head, n_kv, head_dim)
        self.fc = nn.Linear(dim, 4 * dim, bias=False)
        self.out = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x, cos, sin):
        x = x + self.attn(rms(x), cos, sin)
        return x + self.out(F.relu(self.fc(rms(x))).square())


class GPT(nn.Module):
    def __init__(self, depth, aspect_ratio, head_dim, n_kv, vocab, seq, softcap=15.0):
        super().__init__()
        dim = depth * aspect_ratio
        n_head = dim // head_dim
        self.softcap = softcap
        self.wte = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(
            Block(dim, n_head, n_kv or n_head, head_dim) for _ in range(depth)
        )
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        freqs = torch.outer(torch.arange(seq).float(), inv)
        self.register_buffer("cos", freqs.cos()[None, :, None, :], persistent=False)
        self.register_buffer("sin", freqs.sin()[None, :, None, :], persistent=False)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                fan_out, fan_in = m.weight.shape
                nn.init.normal_(
                    m.weight, std=min(1.0, math.sqrt(fan_out / fan_in)) / math.sqrt(fan_in)
                )
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=1.0)
        for b in self.blocks:
            nn.init.zeros_(b.attn.proj.weight)
            nn.init.zeros_(b.out.weight)
        nn.init.zeros_(self.lm_head.weight)

    def forward(self, idx, targets):
        T = idx.shape[1]
        cos, sin = self.cos[:, :T], self.sin[:, :T]
        x = rms(self.wte(idx))
        for block in self.blocks:
            x = block(x, cos, sin)
        logits = self.lm_head(rms(x)).float()
        logits = self.softcap * torch.tanh(logits / self.softcap)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--aspect-ratio", type=int, default=64)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--n-kv-head", type=int, default=0)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--data", default=None, help="npz of x/y [N,B,T] (+ val_x/val_y) to train on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recipe", choices=("2025", "2026"), default="2025")
    p.add_argument("--lr-scale", type=float, default=1.0, help="2026: batch-size lr factor")
    p.add_argument("--muon-wd", type=float, default=0.28, help="2026: Muon weight decay")
    p.add_argument(
        "--init",
        default=None,
        help="npz of the JAX engine's initial parameters (flat nnx paths): start from them",
    )
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if a.recipe == "2026":
        model, adam, muon = build_2026(a)
    else:
        model, adam, muon = build_2025(a)
    if a.init:
        import numpy as np

        from torch_recipe2026 import load_jax_params

        with np.load(a.init) as init:
            load_jax_params(model, {k: init[k] for k in init.files})
    step_fn = torch.compile(model) if a.compile else model
    if a.data:
        train_on_file(a, model, step_fn, adam, muon)
        return
    x = torch.randint(0, a.vocab, (a.batch, a.seq))
    y = torch.randint(0, a.vocab, (a.batch, a.seq))
    run_random(a, model, step_fn, adam, muon, x, y)


def _newton_schulz_fp32(grad, ns_coefficients, ns_steps, eps):
    """torch.optim.Muon's quintic Newton–Schulz in the gradient's fp32 instead of bf16."""
    a, b, c = ns_coefficients
    x = grad.float()
    tall = x.size(0) > x.size(1)
    x = x.T if tall else x
    x = x / x.norm().clamp(min=eps)
    for _ in range(ns_steps):
        g = x @ x.T
        x = a * x + (b * g + c * (g @ g)) @ x
    return x.T if tall else x


def build_2025(a):
    """The late-2025 nanochat model with torch.optim.Muon + AdamW.

    torch.optim.Muon orthogonalises in bf16 (as nanochat does on GPU), which a CPU without native
    bf16 matmuls (AVX512-BF16/AMX) emulates: a d4 step took 13.3 s instead of 3.0 s on the 2-core
    dev VM (2026-11-30). On CPU the iteration runs in fp32 instead, as the JAX engine's does."""
    if not torch.cuda.is_available():
        import torch.optim._muon as torch_muon

        torch_muon._zeropower_via_newtonschulz = _newton_schulz_fp32
    model = GPT(a.depth, a.aspect_ratio, a.head_dim, a.n_kv_head, a.vocab, a.seq)
    dim = a.depth * a.aspect_ratio
    scale = (dim / 768) ** -0.5
    adam = torch.optim.AdamW(
        [
            {"params": model.lm_head.parameters(), "lr": 0.004 * scale},
            {"params": model.wte.parameters(), "lr": 0.2 * scale},
        ],
        betas=(0.8, 0.95),
        eps=1e-10,
        weight_decay=0.0,
    )
    muon = torch.optim.Muon(  # no weight decay, as nanochat's Muon and the JAX engine's
        list(model.blocks.parameters()), lr=0.02, momentum=0.95, weight_decay=0.0
    )
    return model, adam, muon


def build_2026(a):
    """nanochat's current model and optimizer (torch_recipe2026.py)."""
    from torch_recipe2026 import GPT2026, optimizers

    model = GPT2026(a.depth, a.aspect_ratio, a.head_dim, a.n_kv_head, a.vocab, a.seq)
    if a.data:
        import numpy as np

        steps = len(np.load(a.data)["x"])
    else:
        steps = a.warmup + a.steps
    adam, muon = optimizers(model, a.depth * a.aspect_ratio, a.lr_scale, steps, a.muon_wd)
    return model, adam, muon


def run_random(a, model, step_fn, adam, muon, x, y) -> None:
    """Time ``a.steps`` steps on one random batch after ``a.warmup`` untimed ones."""

    def step() -> float:
        return train_step(model, step_fn, adam, muon, x, y)

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    dt = (time.perf_counter() - t0) / a.steps
    print(
        json.dumps(
            {
                "tokens_per_s": a.batch * a.seq / dt,
                "step_s": dt,
                "params": sum(p.numel() for p in model.parameters()),
                "loss": loss,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            }
        )
    )


def train_step(model, step_fn, adam, muon, x, y) -> float:
    loss = step_fn(x, y)
    loss.backward()
    adam.step()
    muon.step()
    model.zero_grad(set_to_none=True)
    return loss.item()


def train_on_file(a, model, step_fn, adam, muon) -> None:
    """Train on every batch of ``a.data`` in order; report each loss and the held-out loss."""
    import numpy as np

    data = np.load(a.data)
    xs, ys = torch.from_numpy(data["x"]).long(), torch.from_numpy(data["y"]).long()
    t0 = time.perf_counter()
    losses = [train_step(model, step_fn, adam, muon, x, y) for x, y in zip(xs, ys, strict=True)]
    dt = (time.perf_counter() - t0) / len(losses)
    val_loss = None
    if "val_x" in data:
        with torch.no_grad():
            vx, vy = torch.from_numpy(data["val_x"]).long(), torch.from_numpy(data["val_y"]).long()
            val_loss = float(np.mean([step_fn(x, y).item() for x, y in zip(vx, vy, strict=True)]))
    print(
        json.dumps(
            {
                "tokens_per_s": xs.shape[1] * xs.shape[2] / dt,
                "step_s": dt,
                "losses": losses,
                "val_loss": val_loss,
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
