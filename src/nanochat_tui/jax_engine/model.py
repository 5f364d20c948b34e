"""The nanochat GPT in Flax NNX, readable top to bottom (after karpathy/nanochat ``nanochat/gpt.py``).

- token embedding → parameter-free RMSNorm → [smear] → ``depth`` blocks → [backout] → RMSNorm →
  lm head → soft-cap
- block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``; with ``residual_scalars`` each block first
  sets ``x = resid[i]·x + x0[i]·x0`` (``x0`` = the embedding after smear)
- attention: rotary positions (no learned positions), QK-norm (× ``qk_scale``), GQA/MQA via
  ``n_kv_head``, causal, optional sliding window per layer (``window_pattern``); with
  ``value_embeds`` alternating layers add a gated per-token value embedding to v (ResFormer)
- MLP: 4× width, ReLU², no biases anywhere; embedding and unembedding are untied
- ``model.blocks`` (the architecture designer) gives each block its own heads, kv heads, window,
  value embedding and MLP (ReLU² or SwiGLU ``c_proj(silu(c_gate(x))·c_fc(x))``); without it every
  block is the nanochat block above (``ModelConfig.block_settings()`` resolves both)
- init ``nanochat-2025``: linear std = 1/√fan_in · min(1, √(fan_out/fan_in)), embedding std 1, lm
  head and both output projections zero. ``nanochat-2026``: uniform q/k/v (std 1/√d), c_fc at 0.4×,
  embedding std 0.8, lm head std 0.001, output projections zero.

The switches come from ``model.recipe`` unless set one by one (``ModelConfig.resolved()``);
``nanochat-2025`` builds exactly the parameters Hugging Face's ``nanochat`` type loads.

Parameters are fp32; ``dtype`` is the compute dtype (bf16 on GPU/TPU, fp32 on CPU). Logits are
always returned in fp32 and cropped to ``vocab_size`` (padded rows never reach a loss or a sampler).
``decode`` runs the same blocks against a fixed-size KV cache.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from nanochat_tui.config.schema import BlockSettings, ModelConfig
from nanochat_tui.jax_engine.attention import causal_attention, masked_attention

SMEAR_CHANNELS = 24  # the smear gate reads this many leading channels of the embedding
VE_GATE_CHANNELS = 12  # the value-embedding gate reads this many leading channels of x


class KVCache(NamedTuple):
    """Keys/values per layer: ``k[i]``, ``v[i]`` are ``[B, max_len, n_kv_head, head_dim]`` (blocks
    may differ in kv heads or head size); ``x_prev`` ``[B, 1, model_dim]`` is the last token's
    embedding (for smear; zeros if unused). One array per layer, not one stacked array: the step
    that donates the cache then updates each in place, where re-stacking copied the whole cache
    every token (CPU: d12 chat decoding 2x faster, d4 1.16x; benchmarks/chat_decode.py)."""

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]
    x_prev: jax.Array | None = None


def norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Parameter-free RMSNorm over the last axis (computed in fp32, returned in x's dtype)."""
    xf = x.astype(jnp.float32)
    y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)
    return y.astype(x.dtype)


def rotary(positions: jax.Array, head_dim: int, base: float) -> tuple[jax.Array, jax.Array]:
    """cos/sin tables ``[T, head_dim/2]`` for integer ``positions`` ``[T]``."""
    inv_freq = 1.0 / (base ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    freqs = positions.astype(jnp.float32)[:, None] * inv_freq[None, :]
    return jnp.cos(freqs), jnp.sin(freqs)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate halves of ``x`` ``[B, T, H, D]`` (nanochat's convention)."""
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    cos = cos[None, :, None, :].astype(x.dtype)
    sin = sin[None, :, None, :].astype(x.dtype)
    return jnp.concatenate([x1 * cos + x2 * sin, x2 * cos - x1 * sin], axis=-1)


def _uniform(low: float, high: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, low, high)

    return init


def _linear(d_in: int, d_out: int, *, init, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    """A bias-free linear layer (fp32 parameters, ``dtype`` compute)."""
    return nnx.Linear(
        d_in,
        d_out,
        use_bias=False,
        kernel_init=init,
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


def _init(cfg: ModelConfig, d_in: int, d_out: int, role: str):
    """Kernel initializer for ``role`` (``qkv``, ``fc``, ``out``) under the config's init recipe."""
    if role == "out":
        return nnx.initializers.zeros_init()
    if cfg.init == "nanochat-2026":
        s = math.sqrt(3) / math.sqrt(cfg.model_dim) * (0.4 if role == "fc" else 1.0)
        return _uniform(-s, s)
    return nnx.initializers.normal(1.0 / math.sqrt(d_in) * min(1.0, math.sqrt(d_out / d_in)))


def dense(layer: nnx.Linear, x: jax.Array) -> jax.Array:
    """Apply ``layer`` on a 2-D view of ``x``: XLA:CPU's weight-gradient matmul is ~3× faster
    contracting one flattened batch axis than (B, T)."""
    return layer(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)


def has_value_embed(cfg: ModelConfig, layer: int) -> bool:
    """Whether ``layer`` has a value embedding (nanochat: alternating, the last layer always
    included; ``model.blocks`` may set it per block)."""
    if cfg.blocks is None:
        return bool(cfg.resolved().value_embeds) and layer % 2 == (cfg.depth - 1) % 2
    return cfg.block_settings()[layer].value_embed


class CausalSelfAttention(nnx.Module):
    def __init__(
        self, cfg: ModelConfig, bs: BlockSettings, *, rngs: nnx.Rngs, dtype=jnp.float32
    ) -> None:
        d, hd = cfg.model_dim, bs.head_dim
        self.n_head, self.n_kv_head, self.head_dim = bs.n_head, bs.n_kv_head, hd
        self.rope_base, self.qk_scale = cfg.rope_base, cfg.qk_scale
        self.window = bs.window
        q = self.n_head * hd
        self.c_q = _linear(d, q, init=_init(cfg, d, q, "qkv"), dtype=dtype, rngs=rngs)
        kv = self.n_kv_head * hd
        self.c_k = _linear(d, kv, init=_init(cfg, d, kv, "qkv"), dtype=dtype, rngs=rngs)
        self.c_v = _linear(d, kv, init=_init(cfg, d, kv, "qkv"), dtype=dtype, rngs=rngs)
        self.c_proj = _linear(q, d, init=_init(cfg, q, d, "out"), dtype=dtype, rngs=rngs)
        self.ve_gate = (
            _linear(
                VE_GATE_CHANNELS, self.n_kv_head, init=_uniform(0.0, 0.02), dtype=dtype, rngs=rngs
            )
            if bs.value_embed
            else None
        )

    def qkv(
        self, x: jax.Array, positions: jax.Array, ve: jax.Array | None
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Project, [add the gated value embedding,] rotate and QK-normalise: q ``[B,T,H,D]``,
        k/v ``[B,T,KV,D]``."""
        b, t, _ = x.shape
        q = dense(self.c_q, x).reshape(b, t, self.n_head, self.head_dim)
        k = dense(self.c_k, x).reshape(b, t, self.n_kv_head, self.head_dim)
        v = dense(self.c_v, x).reshape(b, t, self.n_kv_head, self.head_dim)
        if self.ve_gate is not None and ve is not None:
            gate = 3 * jax.nn.sigmoid(dense(self.ve_gate, x[..., :VE_GATE_CHANNELS]))
            v = v + gate[..., None] * ve.reshape(b, t, self.n_kv_head, self.head_dim)
        cos, sin = rotary(positions, self.head_dim, self.rope_base)
        q, k = norm(apply_rotary(q, cos, sin)), norm(apply_rotary(k, cos, sin))
        if self.qk_scale != 1.0:
            q, k = q * self.qk_scale, k * self.qk_scale
        return q, k, v

    def __call__(self, x: jax.Array, ve: jax.Array | None = None) -> jax.Array:
        b, t, _ = x.shape
        q, k, v = self.qkv(x, jnp.arange(t), ve)
        y = causal_attention(q, k, v, self.window)
        return dense(self.c_proj, y.reshape(b, t, -1))

    def decode(
        self,
        x: jax.Array,
        ve: jax.Array | None,
        k_cache: jax.Array,
        v_cache: jax.Array,
        pos: jax.Array,
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Attend ``t`` new tokens at ``pos..pos+t-1`` to the cache; returns (y, k_cache, v_cache)."""
        b, t, _ = x.shape
        q_pos = pos + jnp.arange(t)
        q, k, v = self.qkv(x, q_pos, ve)
        k_cache = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), (0, pos, 0, 0))
        v_cache = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), (0, pos, 0, 0))
        k_pos = jnp.arange(k_cache.shape[1])[None, :]
        mask = k_pos <= q_pos[:, None]  # [t, max_len]
        if self.window is not None:
            mask = mask & (q_pos[:, None] - k_pos <= self.window)
        y = masked_attention(q, k_cache.astype(q.dtype), v_cache.astype(q.dtype), mask[None, None])
        return dense(self.c_proj, y.reshape(b, t, -1)), k_cache, v_cache


class MLP(nnx.Module):
    """ReLU² (nanochat) with ``hidden`` units (4·width by default)."""

    def __init__(
        self, cfg: ModelConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, hidden: int | None = None
    ) -> None:
        d = cfg.model_dim
        h = self.hidden = hidden or 4 * d
        self.c_fc = _linear(d, h, init=_init(cfg, d, h, "fc"), dtype=dtype, rngs=rngs)
        self.c_proj = _linear(h, d, init=_init(cfg, h, d, "out"), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return dense(self.c_proj, jnp.square(jax.nn.relu(dense(self.c_fc, x))))


class SwiGLU(nnx.Module):
    """``c_proj(silu(c_gate(x)) · c_fc(x))`` with ``hidden`` units (a designer block's MLP)."""

    def __init__(self, cfg: ModelConfig, hidden: int, *, rngs: nnx.Rngs, dtype=jnp.float32) -> None:
        d, self.hidden = cfg.model_dim, hidden
        self.c_fc = _linear(d, hidden, init=_init(cfg, d, hidden, "fc"), dtype=dtype, rngs=rngs)
        self.c_gate = _linear(d, hidden, init=_init(cfg, d, hidden, "fc"), dtype=dtype, rngs=rngs)
        self.c_proj = _linear(hidden, d, init=_init(cfg, hidden, d, "out"), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return dense(self.c_proj, jax.nn.silu(dense(self.c_gate, x)) * dense(self.c_fc, x))


class Block(nnx.Module):
    def __init__(
        self, cfg: ModelConfig, layer: int, *, rngs: nnx.Rngs, dtype=jnp.float32, mlp=None
    ) -> None:
        bs = cfg.block_settings()[layer]
        self.attn = CausalSelfAttention(cfg, bs, rngs=rngs, dtype=dtype)
        if mlp is not None:
            self.mlp = mlp(cfg, layer, rngs=rngs, dtype=dtype)
        elif bs.mlp == "swiglu":
            self.mlp = SwiGLU(cfg, bs.mlp_hidden, rngs=rngs, dtype=dtype)
        else:
            self.mlp = MLP(cfg, rngs=rngs, dtype=dtype, hidden=bs.mlp_hidden)
        s = math.sqrt(3) / math.sqrt(cfg.model_dim)
        self.value_embed = (
            nnx.Embed(
                cfg.padded_vocab,
                bs.n_kv_head * bs.head_dim,
                embedding_init=_uniform(-s, s),
                dtype=dtype,
                param_dtype=jnp.float32,
                rngs=rngs,
            )
            if bs.value_embed
            else None
        )

    def ve(self, idx: jax.Array, dtype) -> jax.Array | None:
        """This layer's value embedding of the tokens (None when the layer has none)."""
        return None if self.value_embed is None else self.value_embed(idx).astype(dtype)

    def __call__(self, x: jax.Array, idx: jax.Array) -> jax.Array:
        x = x + self.attn(norm(x), self.ve(idx, x.dtype))
        return x + self.mlp(norm(x))


STACK_KEY = "stacked_blocks"  # the train step's stacked blocks in its parameter tree (stacked.py)
_STACKED_BLOCKS: contextvars.ContextVar[tuple[Any, dict] | None] = contextvars.ContextVar(
    "stacked_blocks", default=None
)


@contextlib.contextmanager
def use_stacked_blocks(model: GPT, stacks: dict) -> Iterator[None]:
    """While tracing inside it, ``model``'s scanned trunk (no other model's) takes its blocks'
    parameters from ``stacks`` (``stacks[f"r{run}"][f"q{phase}"]``: pure dicts with the layers
    along axis 0, as ``stacked.py`` keeps them) instead of stacking its per-layer ones."""
    token = _STACKED_BLOCKS.set((model, stacks))
    try:
        yield
    finally:
        _STACKED_BLOCKS.reset(token)


def _block_forward(block: Block, x: jax.Array, idx: jax.Array) -> jax.Array:
    return block(x, idx)


_block_forward_remat = nnx.remat(_block_forward)


def layer_runs(blocks, max_period: int = 8) -> list[tuple[int, int, int]]:
    """``(start, end, period)`` runs covering the blocks in order: in each, block ``i`` has the
    graph structure (window, value-embedding presence, ...) of block ``start + (i - start) %
    period``, repeated at least twice, so the run is one ``lax.scan`` over ``(end - start) /
    period`` steps of ``period`` blocks. Greedy from the first block, taking the period that
    covers the most blocks (the smallest on a tie); a block that starts no repeat is a run of
    its own ``(i, i + 1, 1)``. The 2025 recipe's identical blocks are one run of period 1; the
    2026 recipe's ``SSSL`` windows with alternating value embeddings, period 4."""
    return periodic_runs([nnx.graphdef(block) for block in blocks], max_period)


def periodic_runs(defs: list[Any], max_period: int = 8) -> list[tuple[int, int, int]]:
    """``layer_runs`` on any sequence of comparable keys (one per block)."""
    runs: list[tuple[int, int, int]] = []
    start = 0
    while start < len(defs):
        period, repeats = 1, 1
        for p in range(1, max_period + 1):
            k = 1
            while start + (k + 1) * p <= len(defs) and all(
                defs[start + k * p + q] == defs[start + q] for q in range(p)
            ):
                k += 1
            if k >= 2 and k * p > period * repeats:
                period, repeats = p, k
        runs.append((start, start + period * repeats, period))
        start += period * repeats
    return runs


class GPT(nnx.Module):
    """nanochat GPT. ``GPT(cfg, rngs=nnx.Rngs(seed), dtype=jnp.bfloat16)``; params stay fp32.

    ``mlp`` (from a plugin's engine hooks, jax_engine/hooks.py) builds each block's MLP instead.
    """

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, mlp=None) -> None:
        self.config = cfg
        cfg = self.switches = cfg.resolved()
        self.dtype = dtype
        d, n = cfg.model_dim, cfg.depth
        vocab = cfg.padded_vocab
        std_wte = 0.8 if cfg.init == "nanochat-2026" else 1.0
        self.wte = nnx.Embed(
            vocab,
            d,
            embedding_init=nnx.initializers.normal(std_wte),
            dtype=dtype,
            param_dtype=jnp.float32,
            rngs=rngs,
        )
        self.blocks = nnx.List([Block(cfg, i, rngs=rngs, dtype=dtype, mlp=mlp) for i in range(n)])
        head_init = (
            nnx.initializers.normal(0.001)
            if cfg.init == "nanochat-2026"
            else nnx.initializers.zeros_init()
        )
        self.lm_head = _linear(d, vocab, init=head_init, dtype=dtype, rngs=rngs)
        frac = jnp.arange(n, dtype=jnp.float32) / max(n - 1, 1)
        scalars = cfg.residual_scalars
        self.resid_lambdas = nnx.Param(1.15 - 0.10 * frac) if scalars else None
        self.x0_lambdas = nnx.Param(0.20 - 0.15 * frac) if scalars else None
        gate_init = _uniform(0.0, 0.02)
        c = min(SMEAR_CHANNELS, d)
        self.smear_gate = (
            _linear(c, 1, init=gate_init, dtype=dtype, rngs=rngs) if cfg.smear else None
        )
        self.smear_lambda = nnx.Param(jnp.zeros((1,), jnp.float32)) if cfg.smear else None
        self.backout_lambda = nnx.Param(jnp.full((1,), 0.2, jnp.float32)) if cfg.backout else None

    # ------------------------------------------------------------------ pieces of the forward

    def _smear(self, x: jax.Array, x_prev: jax.Array, first: jax.Array) -> jax.Array:
        """``x + λ·σ(gate(x))·x_prev`` per position; ``first`` marks positions with no predecessor."""
        c = self.smear_gate.in_features
        gate = self.smear_lambda[...].astype(x.dtype) * jax.nn.sigmoid(
            dense(self.smear_gate, x[..., :c])
        )
        return x + jnp.where(first[None, :, None], 0.0, gate * x_prev).astype(x.dtype)

    def _trunk(self, x: jax.Array, idx: jax.Array) -> jax.Array:
        """Blocks with the residual/x0 scalars and backout; returns the pre-norm final stream."""
        if self.config.scan_layers:
            return self._trunk_scanned(x, idx)
        x0, x_backout = x, None
        step = _block_forward_remat if self.switches.remat else _block_forward
        for i, block in enumerate(self.blocks):
            if self.resid_lambdas is not None:
                r = self.resid_lambdas[...][i].astype(x.dtype)
                x = r * x + self.x0_lambdas[...][i].astype(x.dtype) * x0
            x = step(block, x, idx)
            if i == len(self.blocks) // 2:
                x_backout = x
        if self.backout_lambda is not None:
            x = x - self.backout_lambda[...].astype(x.dtype) * x_backout
        return x

    def _trunk_scanned(self, x: jax.Array, idx: jax.Array) -> jax.Array:
        """``_trunk`` with each periodic run of blocks (``layer_runs``) as one ``lax.scan`` over
        their stacked parameters, ``period`` blocks per scan step: XLA compiles one body per run
        instead of one block per layer. Backout's snapshot after the middle layer is taken
        inside the scan (a select on the layer index), so it does not cut a run. The parameter
        tree (and so checkpoints) is the same as unscanned; the stacking is a copy per step,
        except under ``use_stacked_blocks`` (the train step's stacked state, ``stacked.py``)."""
        x0 = x
        n = len(self.blocks)
        scalars = self.resid_lambdas is not None
        resid = self.resid_lambdas[...] if scalars else jnp.ones((n,), jnp.float32)
        x0_l = self.x0_lambdas[...] if scalars else jnp.zeros((n,), jnp.float32)
        step = _block_forward_remat if self.switches.remat else _block_forward
        middle = n // 2 if self.backout_lambda is not None else -1
        x_backout = jnp.zeros_like(x)
        owner, given = _STACKED_BLOCKS.get() or (None, None)
        if owner is not self:
            given = None
        for run, (start, end, period) in enumerate(layer_runs(self.blocks)):
            repeats = (end - start) // period
            graphdefs = [nnx.graphdef(self.blocks[start + q]) for q in range(period)]
            if given is not None:
                stacked = [given[f"r{run}"][f"q{q}"] for q in range(period)]
            else:
                stacked = [
                    jax.tree.map(
                        lambda *leaves: jnp.stack(leaves),
                        *(nnx.state(self.blocks[i]) for i in range(start + q, end, period)),
                    )
                    for q in range(period)
                ]
            takes_backout = start <= middle < end

            def body(carry, xs, graphdefs=graphdefs, takes_backout=takes_backout):
                h, snap = carry
                states, r, a, layer = xs
                for q, graphdef in enumerate(graphdefs):
                    if scalars:
                        h = r[q].astype(h.dtype) * h + a[q].astype(h.dtype) * x0
                    h = step(nnx.merge(graphdef, states[q]), h, idx)
                    if takes_backout:
                        snap = jnp.where(layer[q] == middle, h, snap)
                return (h, snap), None

            xs = (
                stacked,
                resid[start:end].reshape(repeats, period),
                x0_l[start:end].reshape(repeats, period),
                jnp.arange(start, end).reshape(repeats, period),
            )
            (x, x_backout), _ = jax.lax.scan(body, (x, x_backout), xs)
        if self.backout_lambda is not None:
            x = x - self.backout_lambda[...].astype(x.dtype) * x_backout
        return x

    def embed(self, idx: jax.Array) -> jax.Array:
        """Normed (and smeared) token embeddings ``[B, T, D]`` in the compute dtype."""
        x = norm(self.wte(idx).astype(self.dtype))
        if self.smear_gate is not None:
            prev = jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
            x = self._smear(x, prev, jnp.arange(x.shape[1]) == 0)
        return x

    def hidden(self, idx: jax.Array) -> jax.Array:
        """The final normed hidden states ``[B, T, D]`` (what the lm head reads)."""
        return norm(self._trunk(self.embed(idx), idx))

    def head(self, h: jax.Array) -> jax.Array:
        """Soft-capped fp32 logits ``[..., vocab_size]`` from hidden states ``h``."""
        logits = dense(self.lm_head, h).astype(jnp.float32)
        if logits.shape[-1] != self.config.vocab_size:
            logits = logits[..., : self.config.vocab_size]
        c = self.config.softcap
        return c * jnp.tanh(logits / c) if c > 0 else logits

    def __call__(self, idx: jax.Array) -> jax.Array:
        """Logits ``float32[B, T, V]`` for token ids ``int32[B, T]`` (causal)."""
        return self.head(self.hidden(idx))

    # ------------------------------------------------------------------ decoding

    def init_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty KV cache for ``batch`` sequences of up to ``max_len`` tokens."""
        c = self.config
        prev = jnp.zeros((batch, 1, c.model_dim), self.dtype)
        shapes = [(batch, max_len, b.n_kv_head, b.head_dim) for b in c.block_settings()]
        k = tuple(jnp.zeros(s, self.dtype) for s in shapes)
        return KVCache(k, tuple(jnp.zeros(s, self.dtype) for s in shapes), prev)

    def decode(
        self, idx: jax.Array, cache: KVCache, pos: int | jax.Array
    ) -> tuple[jax.Array, KVCache]:
        """Logits for ``t`` new tokens ``idx[B, t]`` placed at ``pos``, and the updated cache."""
        pos = jnp.asarray(pos, jnp.int32)
        x = norm(self.wte(idx).astype(self.dtype))
        x_prev = cache.x_prev
        if self.smear_gate is not None:
            prev = jnp.concatenate([x_prev.astype(x.dtype), x[:, :-1]], axis=1)
            x_prev = x[:, -1:]
            x = self._smear(x, prev, pos + jnp.arange(x.shape[1]) == 0)
        x0, x_backout = x, None
        ks, vs = [], []
        for i, block in enumerate(self.blocks):
            if self.resid_lambdas is not None:
                r = self.resid_lambdas[...][i].astype(x.dtype)
                x = r * x + self.x0_lambdas[...][i].astype(x.dtype) * x0
            ve = block.ve(idx, x.dtype)
            y, k, v = block.attn.decode(norm(x), ve, cache.k[i], cache.v[i], pos)
            x = x + y
            x = x + block.mlp(norm(x))
            if i == len(self.blocks) // 2:
                x_backout = x
            ks.append(k)
            vs.append(v)
        if self.backout_lambda is not None:
            x = x - self.backout_lambda[...].astype(x.dtype) * x_backout
        return self.head(norm(x)), KVCache(tuple(ks), tuple(vs), x_prev)


# The losses live in losses.py (chunked cross-entropy); re-exported for existing callers.
from nanochat_tui.jax_engine.losses import loss_fn, loss_sum, token_losses  # noqa: E402, F401
