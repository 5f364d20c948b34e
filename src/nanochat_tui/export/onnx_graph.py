"""``--format onnx``: the forward pass as an ONNX graph, built with the ``onnx`` package's helper
API from the NumPy weights (no torch, no tracing).

    input   input_ids  int64[batch, sequence]
    output  logits     float32[batch, sequence, vocab_size]   (soft-capped, like ``GPT.__call__``)

Both axes are dynamic. Every recipe switch is represented (value embeddings, residual/x0 scalars,
smear, backout, sliding windows, QK scale, padded vocabulary), and so are a designer's per-block
settings (``model.blocks``: heads, kv heads, head size, window, ReLU² or SwiGLU MLP, value
embedding per block), so any checkpoint without plugin layers exports. Opset 18;
weights above ~1.5 GB go to ``model.onnx.data`` next to the graph (protobuf's 2 GB limit).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nanochat_tui.errors import UserError
from nanochat_tui.export.source import ExportSource
from nanochat_tui.jax_engine.model import SMEAR_CHANNELS, VE_GATE_CHANNELS
from nanochat_tui.rundir import atomic_path, write_atomic

OPSET = 18
EXTERNAL_DATA_BYTES = 1_500_000_000


def require_onnx():
    """The ``onnx`` module, or a UserError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise UserError(
            "--format onnx needs the onnx package, which is not installed",
            "run it with `uv run --extra export nanochat-tui export ...` "
            "(or `pip install 'nanochat-tui[export]'`)",
        ) from None
    return onnx


def check_exportable(source: ExportSource) -> None:
    """Every model exports to ONNX (plugin-built ones never load here); only the package may be
    missing."""
    require_onnx()


class _Graph:
    """Accumulates nodes and initializers; every op returns its (unique) output name."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.initializers: list = []
        self._n = 0

    def _name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, value, hint: str = "c", dtype=None) -> str:
        arr = np.asarray(value, dtype=dtype if dtype is not None else np.asarray(value).dtype)
        name = self._name(hint)
        self.initializers.append(self.numpy_helper.from_array(arr, name))
        return name

    def ints(self, *values: int) -> str:
        return self.const(np.array(values, np.int64), "shape")

    def scalar(self, value: float) -> str:
        return self.const(np.float32(value), "s")

    def op(self, op_type: str, *inputs: str, hint: str | None = None, **attrs) -> str:
        out = self._name(hint or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out


def _norm(g: _Graph, x: str, eps: float = 1e-6) -> str:
    """Parameter-free RMSNorm over the last axis."""
    ms = g.op("ReduceMean", g.op("Mul", x, x), g.ints(-1), keepdims=1)
    return g.op("Div", x, g.op("Sqrt", g.op("Add", ms, g.scalar(eps))), hint="norm")


def _last(g: _Graph, x: str, start: int, stop: int) -> str:
    """``x[..., start:stop]``."""
    return g.op("Slice", x, g.ints(start), g.ints(stop), g.ints(-1))


def _rotary(g: _Graph, x: str, cos: str, sin: str, half: int) -> str:
    """nanochat's rotation of the two halves of ``x [B, T, H, D]``."""
    x1, x2 = _last(g, x, 0, half), _last(g, x, half, 2 * half)
    y1 = g.op("Add", g.op("Mul", x1, cos), g.op("Mul", x2, sin))
    y2 = g.op("Sub", g.op("Mul", x2, cos), g.op("Mul", x1, sin))
    return g.op("Concat", y1, y2, axis=-1)


class _Builder:
    """Translates one checkpoint's weights and switches into the graph."""

    def __init__(self, source: ExportSource) -> None:
        self.g = _Graph()
        self.m = source.model
        self.w = source.weights
        self.blocks = source.config.model.block_settings()
        self._rope: dict[int, tuple[str, str]] = {}

    def weight(self, name: str) -> str:
        return self.g.const(self.w[name].astype(np.float32), name.replace(".", "_"))

    def linear(self, x: str, name: str) -> str:
        return self.g.op("MatMul", x, self.weight(name))

    def positions(self, ids: str) -> tuple[str, str, str]:
        """The positions ``[T]`` and the row/column positions ``[T, 1]``, ``[1, T]``."""
        g = self.g
        t = g.op("Gather", g.op("Shape", ids), g.const(np.int64(1), "one"), axis=0)
        pos = g.op("Range", g.const(np.int64(0), "zero"), t, g.const(np.int64(1), "one"))
        return pos, g.op("Unsqueeze", pos, g.ints(1)), g.op("Unsqueeze", pos, g.ints(0))

    def rope(self, pos: str, head_dim: int) -> tuple[str, str]:
        """(cos, sin) ``[1, T, 1, D/2]`` for ``head_dim`` (built once per head size)."""
        if head_dim not in self._rope:
            g, m = self.g, self.m
            inv_freq = 1.0 / (
                m.rope_base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim)
            )
            freqs = g.op(
                "Mul",
                g.op("Unsqueeze", g.op("Cast", pos, to=1), g.ints(1)),
                g.const(inv_freq.astype(np.float32)[None, :], f"inv_freq_{head_dim}"),
            )
            cos = g.op("Unsqueeze", g.op("Cos", freqs), g.ints(0, 2))
            sin = g.op("Unsqueeze", g.op("Sin", freqs), g.ints(0, 2))
            self._rope[head_dim] = (cos, sin)
        return self._rope[head_dim]

    def attention(self, i: int, x: str, ids: str, pos: str, masks: dict) -> str:
        g, m, bs = self.g, self.m, self.blocks[i]
        h, kv, d = bs.n_head, bs.n_kv_head, bs.head_dim
        p = f"blocks.{i}.attn"
        q = g.op("Reshape", self.linear(x, f"{p}.c_q"), g.ints(0, 0, h, d))
        k = g.op("Reshape", self.linear(x, f"{p}.c_k"), g.ints(0, 0, kv, d))
        v = g.op("Reshape", self.linear(x, f"{p}.c_v"), g.ints(0, 0, kv, d))
        if bs.value_embed:
            ve = g.op("Gather", self.weight(f"blocks.{i}.value_embed"), ids, axis=0)
            gate_in = _last(g, x, 0, VE_GATE_CHANNELS)
            gate = g.op("Mul", g.scalar(3.0), g.op("Sigmoid", self.linear(gate_in, f"{p}.ve_gate")))
            ve = g.op("Reshape", ve, g.ints(0, 0, kv, d))
            v = g.op("Add", v, g.op("Mul", g.op("Unsqueeze", gate, g.ints(-1)), ve))
        cos, sin = self.rope(pos, d)
        q, k = _norm(g, _rotary(g, q, cos, sin, d // 2)), _norm(g, _rotary(g, k, cos, sin, d // 2))
        if m.qk_scale != 1.0:
            q, k = g.op("Mul", q, g.scalar(m.qk_scale)), g.op("Mul", k, g.scalar(m.qk_scale))
        q = g.op("Transpose", q, perm=[0, 2, 1, 3])  # [B, H, T, D]
        k = g.op("Transpose", k, perm=[0, 2, 3, 1])  # [B, KV, D, T]
        v = g.op("Transpose", v, perm=[0, 2, 1, 3])  # [B, KV, T, D]
        if kv != h:  # query head j reads key/value head j // (h / kv)
            reps = g.ints(1, 1, h // kv, 1, 1)
            k = g.op(
                "Reshape", g.op("Tile", g.op("Unsqueeze", k, g.ints(2)), reps), g.ints(0, h, d, -1)
            )
            v = g.op(
                "Reshape", g.op("Tile", g.op("Unsqueeze", v, g.ints(2)), reps), g.ints(0, h, -1, d)
            )
        scores = g.op("Mul", g.op("MatMul", q, k), g.scalar(1.0 / math.sqrt(d)))
        scores = g.op("Where", masks[bs.window], scores, g.scalar(-np.inf))
        y = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        y = g.op("Reshape", g.op("Transpose", y, perm=[0, 2, 1, 3]), g.ints(0, 0, -1))
        return self.linear(y, f"{p}.c_proj")

    def mlp(self, i: int, x: str) -> str:
        g, p = self.g, f"blocks.{i}.mlp"
        if self.blocks[i].mlp == "swiglu":  # c_proj(silu(c_gate x) · c_fc x); silu(z) = z·σ(z)
            gate = self.linear(x, f"{p}.c_gate")
            h = g.op("Mul", g.op("Mul", gate, g.op("Sigmoid", gate)), self.linear(x, f"{p}.c_fc"))
            return self.linear(h, f"{p}.c_proj")
        h = g.op("Relu", self.linear(x, f"{p}.c_fc"))
        return self.linear(g.op("Mul", h, h), f"{p}.c_proj")

    def build(self):
        g, m, helper = self.g, self.m, self.g.helper
        ids = "input_ids"
        x = _norm(g, g.op("Gather", self.weight("wte"), ids, axis=0))
        if m.smear:
            c = min(SMEAR_CHANNELS, m.model_dim)
            shifted = g.op("Slice", x, g.ints(0), g.ints(-1), g.ints(1))
            zeros = g.op("Mul", g.op("Slice", x, g.ints(0), g.ints(1), g.ints(1)), g.scalar(0.0))
            prev = g.op("Concat", zeros, shifted, axis=1)
            gate = g.op("Sigmoid", self.linear(_last(g, x, 0, c), "smear_gate"))
            gate = g.op("Mul", self.weight("smear_lambda"), gate)
            x = g.op("Add", x, g.op("Mul", gate, prev))
        pos, rows, cols = self.positions(ids)
        causal = g.op("LessOrEqual", cols, rows)
        masks: dict = {None: causal}
        for w in {b.window for b in self.blocks if b.window is not None}:
            near = g.op("LessOrEqual", g.op("Sub", rows, cols), g.const(np.int64(w), f"window{w}"))
            masks[w] = g.op("And", causal, near)
        x0, backout = x, None
        for i in range(m.depth):
            if m.residual_scalars:
                r = float(self.w["resid_lambdas"][i])
                a = float(self.w["x0_lambdas"][i])
                x = g.op("Add", g.op("Mul", x, g.scalar(r)), g.op("Mul", x0, g.scalar(a)))
            x = g.op("Add", x, self.attention(i, _norm(g, x), ids, pos, masks))
            x = g.op("Add", x, self.mlp(i, _norm(g, x)))
            if i == m.depth // 2:
                backout = x
        if m.backout:
            x = g.op("Sub", x, g.op("Mul", self.weight("backout_lambda"), backout))
        logits = self.linear(_norm(g, x), "lm_head")
        if m.padded_vocab != m.vocab_size:
            logits = _last(g, logits, 0, m.vocab_size)
        if m.softcap > 0:
            c = g.scalar(m.softcap)
            logits = g.op("Mul", g.op("Tanh", g.op("Div", logits, c)), c)
        g.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
        from onnx import TensorProto

        graph = helper.make_graph(
            g.nodes,
            "nanochat",
            [helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "sequence"])],
            [
                helper.make_tensor_value_info(
                    "logits", TensorProto.FLOAT, ["batch", "sequence", m.vocab_size]
                )
            ],
            g.initializers,
        )
        return helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="nanochat-tui",
            doc_string=f"nanochat GPT ({m.recipe}), depth {m.depth}, width {m.model_dim}",
        )


def build_model(source: ExportSource):
    """The ``onnx.ModelProto`` of ``source``'s forward pass."""
    require_onnx()
    return _Builder(source).build()


def export_onnx(source: ExportSource, out: Path) -> list[Path]:
    """Write ``out/model.onnx`` (and ``model.onnx.data`` for a large model) plus the tokenizer."""
    import onnx

    model = build_model(source)
    path = out / "model.onnx"
    big = sum(w.nbytes for w in source.weights.values()) > EXTERNAL_DATA_BYTES
    files = [path]
    if big:
        data = out / "model.onnx.data"
        data.unlink(missing_ok=True)
        onnx.save_model(model, str(path), save_as_external_data=True, location=data.name)
        files.append(data)
    else:
        with atomic_path(path) as tmp:
            onnx.save_model(model, str(tmp))
    write_atomic(out / "tokenizer.json", source.tokenizer.to_str())
    files.append(out / "tokenizer.json")
    return files
