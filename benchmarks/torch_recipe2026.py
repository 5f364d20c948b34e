"""karpathy/nanochat's current (2026) model and optimizer in PyTorch, for torch_reference.py.

Written from nanochat's ``gpt.py`` / ``optim.py`` (facts, not code): value embeddings with gates,
per-layer residual/x0 scalars, smear, backout, sliding windows (SSSL, last layer full), rotary base
100000, QK scale 1.2, its init, vocab padded to 64; Muon with Polar Express, NorMuon, MuonEq/Muon+
and cautious weight decay (cosine to zero), per-group AdamW. Single device, fp32.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

POLAR_EXPRESS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)


def rms(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


def rotate(x, cos, sin):
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    return torch.cat([a * cos + b * sin, b * cos - a * sin], dim=-1)


def has_ve(i: int, depth: int) -> bool:
    return i % 2 == (depth - 1) % 2


class Attention(nn.Module):
    def __init__(self, dim, n_head, n_kv, head_dim, layer, depth, window):
        super().__init__()
        self.n_head, self.n_kv, self.head_dim, self.window = n_head, n_kv, head_dim, window
        self.q = nn.Linear(dim, n_head * head_dim, bias=False)
        self.k = nn.Linear(dim, n_kv * head_dim, bias=False)
        self.v = nn.Linear(dim, n_kv * head_dim, bias=False)
        self.proj = nn.Linear(n_head * head_dim, dim, bias=False)
        self.ve_gate = nn.Linear(12, n_kv, bias=False) if has_ve(layer, depth) else None

    def forward(self, x, cos, sin, ve):
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_head, self.head_dim)
        k = self.k(x).view(B, T, self.n_kv, self.head_dim)
        v = self.v(x).view(B, T, self.n_kv, self.head_dim)
        if ve is not None:
            gate = 3 * torch.sigmoid(self.ve_gate(x[..., :12]))
            v = v + gate.unsqueeze(-1) * ve.view(B, T, self.n_kv, self.head_dim)
        q, k = rms(rotate(q, cos, sin)) * 1.2, rms(rotate(k, cos, sin)) * 1.2
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        gqa = self.n_kv != self.n_head
        if self.window is None or self.window >= T:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            i = torch.arange(T)[:, None]
            j = torch.arange(T)[None, :]
            mask = (j <= i) & (i - j <= self.window)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self.proj(y.transpose(1, 2).reshape(B, T, -1))


class Block(nn.Module):
    def __init__(self, dim, n_head, n_kv, head_dim, layer, depth, window):
        super().__init__()
        self.attn = Attention(dim, n_head, n_kv, head_dim, layer, depth, window)
        self.fc = nn.Linear(dim, 4 * dim, bias=False)
        self.out = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x, cos, sin, ve):
        x = x + self.attn(rms(x), cos, sin, ve)
        return x + self.out(F.relu(self.fc(rms(x))).square())


class GPT2026(nn.Module):
    def __init__(self, depth, aspect_ratio, head_dim, n_kv, vocab, seq, softcap=15.0):
        super().__init__()
        dim = depth * aspect_ratio
        n_head = dim // head_dim
        n_kv = n_kv or n_head
        self.vocab, self.softcap = vocab, softcap
        padded = -(-vocab // 64) * 64
        short = -(-seq // 4 // 128) * 128
        windows = [short if "SSSL"[i % 4] == "S" else None for i in range(depth)]
        windows[-1] = None
        self.wte = nn.Embedding(padded, dim)
        self.blocks = nn.ModuleList(
            Block(dim, n_head, n_kv, head_dim, i, depth, windows[i]) for i in range(depth)
        )
        self.lm_head = nn.Linear(dim, padded, bias=False)
        self.value_embeds = nn.ModuleDict(
            {
                str(i): nn.Embedding(padded, n_kv * head_dim)
                for i in range(depth)
                if has_ve(i, depth)
            }
        )
        frac = torch.arange(depth, dtype=torch.float32) / max(depth - 1, 1)
        self.resid_lambdas = nn.Parameter(1.15 - 0.10 * frac)
        self.x0_lambdas = nn.Parameter(0.20 - 0.15 * frac)
        self.smear_gate = nn.Linear(24, 1, bias=False)
        self.smear_lambda = nn.Parameter(torch.zeros(1))
        self.backout_lambda = nn.Parameter(torch.full((1,), 0.2))
        inv = 1.0 / (100000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        freqs = torch.outer(torch.arange(seq).float(), inv)
        self.register_buffer("cos", freqs.cos()[None, :, None, :], persistent=False)
        self.register_buffer("sin", freqs.sin()[None, :, None, :], persistent=False)
        s = math.sqrt(3) / math.sqrt(dim)
        with torch.no_grad():
            nn.init.normal_(self.wte.weight, std=0.8)
            nn.init.normal_(self.lm_head.weight, std=0.001)
            for b in self.blocks:
                for lin in (b.attn.q, b.attn.k, b.attn.v):
                    nn.init.uniform_(lin.weight, -s, s)
                nn.init.uniform_(b.fc.weight, -0.4 * s, 0.4 * s)
                nn.init.zeros_(b.attn.proj.weight)
                nn.init.zeros_(b.out.weight)
                if b.attn.ve_gate is not None:
                    nn.init.uniform_(b.attn.ve_gate.weight, 0.0, 0.02)
            nn.init.uniform_(self.smear_gate.weight, 0.0, 0.02)
            for ve in self.value_embeds.values():
                nn.init.uniform_(ve.weight, -s, s)

    def forward(self, idx, targets):
        T = idx.shape[1]
        cos, sin = self.cos[:, :T], self.sin[:, :T]
        x = rms(self.wte(idx))
        gate = self.smear_lambda * torch.sigmoid(self.smear_gate(x[:, 1:, :24]))
        x = torch.cat([x[:, :1], x[:, 1:] + gate * x[:, :-1]], dim=1)
        x0, backout = x, None
        for i, block in enumerate(self.blocks):
            x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0
            ve = self.value_embeds[str(i)](idx) if str(i) in self.value_embeds else None
            x = block(x, cos, sin, ve)
            if i == len(self.blocks) // 2:
                backout = x
        x = x - self.backout_lambda * backout
        logits = self.lm_head(rms(x))[..., : self.vocab].float()
        logits = self.softcap * torch.tanh(logits / self.softcap)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


class NorMuon(torch.optim.Optimizer):
    """nanochat's Muon step per weight (torch ``[out, in]`` layout), cautious cosine weight decay."""

    def __init__(self, params, lr=0.02, momentum=0.97, weight_decay=0.28, beta2=0.9, steps=1):
        super().__init__(params, dict(lr=lr, momentum=momentum, wd=weight_decay, beta2=beta2))
        self.total = max(steps, 1)
        self.t = 0

    @torch.no_grad()
    def step(self):
        wd_scale = 0.5 * (1 + math.cos(math.pi * min(self.t / self.total, 1.0)))
        self.t += 1
        for group in self.param_groups:
            m, lr, b2 = group["momentum"], group["lr"], group["beta2"]
            wd = group["wd"] * wd_scale
            for p in group["params"]:
                st = self.state[p]
                if not st:
                    st["buf"] = torch.zeros_like(p)
                    rows, cols = p.shape
                    st["v"] = torch.zeros((rows, 1) if rows >= cols else (1, cols))
                buf = st["buf"]
                buf.lerp_(p.grad, 1 - m)
                g = p.grad.lerp(buf, m)
                target = g.norm() / g.size(0) ** 0.5
                x = g * (target / g.norm(dim=-1, keepdim=True).clamp_min(1e-6))
                x = x / (x.norm() * 1.01 + 1e-6)
                tall = x.size(0) > x.size(1)
                for a, b, c in POLAR_EXPRESS:
                    A = x.mT @ x if tall else x @ x.mT
                    B = b * A + c * (A @ A)
                    x = a * x + (x @ B if tall else B @ x)
                x = x * (min(x.shape) ** 0.5 / x.norm().clamp_min(1e-6))
                red = -1 if x.size(0) >= x.size(1) else -2
                n = x.size(red)
                v_mean = x.square().mean(dim=red, keepdim=True)
                v_norm = (v_mean.sum() * n).sqrt()
                st["v"].lerp_(v_mean, 1 - b2)
                step = st["v"].clamp_min(1e-10).rsqrt()
                v_new = (v_mean * n * step.square()).sum().sqrt()
                x = x * step * (v_norm / v_new.clamp_min(1e-10))
                lr_eff = lr * max(1.0, x.size(0) / x.size(1)) ** 0.5
                mask = (x * p) >= 0
                p.sub_(lr_eff * x + lr_eff * wd * p * mask)


# JAX parameter path (``nnx.to_flat_state`` joined by dots, ``blocks.<i>.`` prefix for block leaves)
# -> (torch attribute path, transposed: JAX kernels are [in, out], torch weights [out, in])
_BLOCK_NAMES = {
    "attn.c_q.kernel": ("attn.q.weight", True),
    "attn.c_k.kernel": ("attn.k.weight", True),
    "attn.c_v.kernel": ("attn.v.weight", True),
    "attn.c_proj.kernel": ("attn.proj.weight", True),
    "attn.ve_gate.kernel": ("attn.ve_gate.weight", True),
    "mlp.c_fc.kernel": ("fc.weight", True),
    "mlp.c_proj.kernel": ("out.weight", True),
}
_TOP_NAMES = {
    "wte.embedding": ("wte.weight", False),
    "lm_head.kernel": ("lm_head.weight", True),
    "resid_lambdas": ("resid_lambdas", False),
    "x0_lambdas": ("x0_lambdas", False),
    "smear_gate.kernel": ("smear_gate.weight", True),
    "smear_lambda": ("smear_lambda", False),
    "backout_lambda": ("backout_lambda", False),
}


def torch_name(jax_path: str) -> tuple[str, bool]:
    """The torch parameter (and whether to transpose) for a JAX engine parameter path."""
    if jax_path in _TOP_NAMES:
        return _TOP_NAMES[jax_path]
    _, layer, rest = jax_path.split(".", 2)
    if rest == "value_embed.embedding":
        return f"value_embeds.{layer}.weight", False
    name, transpose = _BLOCK_NAMES[rest]
    return f"blocks.{layer}.{name}", transpose


@torch.no_grad()
def load_jax_params(model: GPT2026, params: dict) -> None:
    """Copy the JAX engine's parameters (``{path: array}``) into ``model``; every torch
    parameter must be covered, with the same shape."""
    own = dict(model.named_parameters())
    seen = set()
    for path, value in params.items():
        name, transpose = torch_name(path)
        t = torch.tensor(np.array(value.T if transpose else value))
        if own[name].shape != t.shape:
            raise ValueError(f"{path} -> {name}: {tuple(t.shape)} vs {tuple(own[name].shape)}")
        own[name].copy_(t)
        seen.add(name)
    if missing := sorted(set(own) - seen):
        raise ValueError(f"no JAX parameter for {missing}")


def optimizers(model: GPT2026, dim: int, lr_scale: float, steps: int, muon_wd: float = 0.28):
    """nanochat's per-group AdamW and NorMuon at its default lrs × ``lr_scale`` (batch scaling);
    ``muon_wd``: the Muon weight decay at step 0 (base_train scales 0.28 by batch and horizon)."""
    d = (dim / 768) ** -0.5
    groups = [
        (list(model.lm_head.parameters()), 0.008 * d * lr_scale, (0.8, 0.96), 0.01),
        (list(model.wte.parameters()), 0.3 * d * lr_scale, (0.8, 0.995), 0.001),
        (list(model.value_embeds.parameters()), 0.15 * d * lr_scale, (0.8, 0.995), 0.01),
        ([model.resid_lambdas], 0.005 * lr_scale, (0.8, 0.95), 0.05),
        ([model.x0_lambdas], 0.5 * lr_scale, (0.96, 0.95), 0.0),
        (
            [model.smear_gate.weight, model.smear_lambda, model.backout_lambda],
            0.2,
            (0.8, 0.95),
            0.0,
        ),
    ]
    adam = torch.optim.AdamW(
        [dict(params=p, lr=lr, betas=b, weight_decay=wd) for p, lr, b, wd in groups if p], eps=1e-10
    )
    muon = NorMuon(
        list(model.blocks.parameters()), lr=0.02 * lr_scale, weight_decay=muon_wd, steps=steps
    )
    return adam, muon
