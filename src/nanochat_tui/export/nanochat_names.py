"""karpathy/nanochat's checkpoint layout in both revisions, as NumPy (no torch, no JAX).

Facts read from karpathy/nanochat at commit ``NANOCHAT_COMMIT`` (``nanochat/gpt.py``,
``nanochat/checkpoint_manager.py``, ``scripts/base_train.py``):

- **2025** (HF's ``nanochat`` type): ``transformer.wte.weight``,
  ``transformer.h.<i>.attn.c_{q,k,v,proj}.weight``, ``transformer.h.<i>.mlp.c_{fc,proj}.weight``,
  ``lm_head.weight``; rotary base 10000, no QK scale, vocabulary not padded.
- **2026** (current ``GPT``) adds ``value_embeds.<i>.weight`` ``[padded_vocab, n_kv_head·head_dim]``
  and ``transformer.h.<i>.attn.ve_gate.weight`` ``[n_kv_head, 12]`` on the value-embedding layers
  (``i % 2 == (n_layer - 1) % 2``), ``resid_lambdas``/``x0_lambdas`` ``[n_layer]``,
  ``smear_gate.weight`` ``[1, 24]``, ``smear_lambda`` ``[1]``, ``backout_lambda`` ``[1]``;
  embedding and head rows padded to a multiple of 64. ``model_config`` in ``meta_<step>.json``
  gains ``window_pattern`` (absent = "L"). Constants that live only in code: rotary base 100000,
  q and k × 1.2 after QK-norm, value-embedding gate ``3·sigmoid``, smear gate ``sigmoid`` times
  ``smear_lambda``, backout read after layer ``n_layer // 2``, short window
  ``ceil(sequence_len / 4 / 128) · 128``, last layer full context, logit soft-cap 15 — exactly our
  ``nanochat-2026`` recipe with ``short_window`` 0.

torch's Linear weights are ``[out, in]``; ours are ``[in, out]``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

NANOCHAT_COMMIT = "92d63d4e8bb4df75c3b71618f31ddde2378b2bcd"
SOFTCAP = 15.0
VOCAB_MULTIPLE = 64  # nanochat 2026 pads wte / lm_head / value_embeds rows to this
SMEAR_CHANNELS = 24
VE_GATE_CHANNELS = 12
LAYER_KEYS = ("attn.c_q", "attn.c_k", "attn.c_v", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
# the 2026 switches as nanochat's code fixes them (our config.recipes values)
SWITCHES_2026: dict[str, Any] = {
    "rope_base": 100000.0,
    "qk_scale": 1.2,
    "value_embeds": True,
    "residual_scalars": True,
    "smear": True,
    "backout": True,
}
SCALARS_2026 = ("resid_lambdas", "x0_lambdas", "smear_lambda", "backout_lambda")

# a 2026 checkpoint's parameters beyond the 2025 ones → the feature they carry
_FEATURES = (
    (re.compile(r"^value_embeds\.\d+\.weight$"), "value embeddings (value_embeds.*)"),
    (re.compile(r"^transformer\.h\.\d+\.attn\.ve_gate\.weight$"), "value-embedding gates"),
    (re.compile(r"^smear_(gate\.weight|lambda)$"), "smear (smear_gate, smear_lambda)"),
    (re.compile(r"^backout_lambda$"), "backout (backout_lambda)"),
)
_KNOWN = re.compile(
    r"^(transformer\.wte\.weight|lm_head\.weight|resid_lambdas|x0_lambdas"
    r"|transformer\.h\.\d+\.(attn\.c_[qkv]|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight)$"
)


def has_ve(layer: int, n_layer: int) -> bool:
    """nanochat's value-embedding layers: alternating, the last one always included."""
    return layer % 2 == (n_layer - 1) % 2


def padded(vocab: int) -> int:
    """nanochat 2026's embedding rows for ``vocab`` tokens."""
    return -(-vocab // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def _rows(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` with exactly ``n`` rows: cropped, or zero-padded (rows past the vocabulary are never
    read: nanochat and we crop the logits, and no token id points there)."""
    if a.shape[0] >= n:
        return a[:n]
    return np.concatenate([a, np.zeros((n - a.shape[0], *a.shape[1:]), a.dtype)])


def to_nanochat(weights: dict[str, np.ndarray], depth: int, revision: str, vocab: int) -> dict:
    """Our weights (``source.param_arrays`` names) under nanochat's names for ``revision``."""
    new = revision == "2026"
    rows = padded(vocab) if new else vocab
    out = {"transformer.wte.weight": _rows(weights["wte"], rows)}
    for i in range(depth):
        for key in LAYER_KEYS:
            out[f"transformer.h.{i}.{key}.weight"] = weights[f"blocks.{i}.{key}"].T
        if new and has_ve(i, depth):
            out[f"transformer.h.{i}.attn.ve_gate.weight"] = weights[f"blocks.{i}.attn.ve_gate"].T
            out[f"value_embeds.{i}.weight"] = _rows(weights[f"blocks.{i}.value_embed"], rows)
    out["lm_head.weight"] = _rows(weights["lm_head"].T, rows)
    if new:
        out["smear_gate.weight"] = weights["smear_gate"].T
        out.update({name: weights[name] for name in SCALARS_2026})
    return {k: np.array(v, np.float32, order="C") for k, v in out.items()}  # writable copies


def revision_of(state: dict[str, np.ndarray], config: dict[str, Any]) -> tuple[str, list[str]]:
    """(``"2025"`` or ``"2026"``, problems) for a nanochat state dict and its ``model_config``;
    a problem names a feature our recipes cannot represent (the import is refused)."""
    unknown = sorted(k for k in state if not _KNOWN.match(k) and not _feature(k))
    if unknown:
        shown = ", ".join(unknown[:6]) + (" ..." if len(unknown) > 6 else "")
        return "2026", [
            f"parameters of a nanochat newer than commit {NANOCHAT_COMMIT[:7]} ({shown})"
        ]
    found = {label for key in state if (label := _feature(key))}
    pattern = str(config.get("window_pattern", "L")).upper()
    if not found:
        problems = []
        for name, identity in (("resid_lambdas", 1.0), ("x0_lambdas", 0.0)):
            if name in state and not np.all(state[name] == identity):
                problems.append(f"learned residual scalars ({name}) without the rest of 2026")
        if set(pattern) - {"L"}:
            problems.append(f"sliding windows (window_pattern {pattern}) without the rest of 2026")
        return "2025", problems
    missing = sorted({label for _, label in _FEATURES} - found)
    if missing:
        return "2026", [
            f"an intermediate nanochat revision: {', '.join(sorted(found))} without "
            f"{', '.join(missing)} (its code constants are not recorded in the checkpoint)"
        ]
    return "2026", _shape_problems(state, config, pattern)


def _feature(key: str) -> str | None:
    return next((label for pattern, label in _FEATURES if pattern.match(key)), None)


def _shape_problems(state: dict[str, np.ndarray], config: dict[str, Any], pattern: str) -> list:
    """What in a 2026 state dict differs from the layout our 2026 recipe builds."""
    problems = []
    if set(pattern) - {"S", "L"}:
        problems.append(f"window_pattern {pattern!r} (only S and L exist)")
    n = int(config["n_layer"])
    ve = sorted(int(k.split(".")[1]) for k in state if k.startswith("value_embeds."))
    if ve != [i for i in range(n) if has_ve(i, n)]:
        problems.append(f"value embeddings on layers {ve} (ours: alternating, ending at the last)")
    gates = {k: v.shape for k, v in state.items() if k.endswith("attn.ve_gate.weight")}
    if any(shape[-1] != VE_GATE_CHANNELS for shape in gates.values()):
        channels = sorted({shape[-1] for shape in gates.values()})
        problems.append(
            f"value-embedding gates reading {channels} channels (ours read {VE_GATE_CHANNELS})"
        )
    smear = state["smear_gate.weight"].shape
    if smear != (1, SMEAR_CHANNELS):
        problems.append(f"a smear gate of shape {list(smear)} (ours: [1, {SMEAR_CHANNELS}])")
    for name in ("resid_lambdas", "x0_lambdas"):
        if name in state and state[name].shape != (n,):
            problems.append(f"{name} of shape {list(state[name].shape)} (ours: [{n}])")
    return problems


def from_nanochat(state: dict[str, np.ndarray], depth: int, revision: str) -> dict:
    """nanochat's names → ours (``[in, out]`` kernels). A 2026 checkpoint without the residual
    scalars gets nanochat's own patch (ones and zeros). Raises KeyError for a missing key."""
    out = {"wte": state["transformer.wte.weight"], "lm_head": state["lm_head.weight"].T}
    for i in range(depth):
        for key in LAYER_KEYS:
            out[f"blocks.{i}.{key}"] = state[f"transformer.h.{i}.{key}.weight"].T
        if revision == "2026" and has_ve(i, depth):
            out[f"blocks.{i}.attn.ve_gate"] = state[f"transformer.h.{i}.attn.ve_gate.weight"].T
            out[f"blocks.{i}.value_embed"] = state[f"value_embeds.{i}.weight"]
    if revision == "2026":
        out["smear_gate"] = state["smear_gate.weight"].T
        out["resid_lambdas"] = state.get("resid_lambdas", np.ones(depth, np.float32))
        out["x0_lambdas"] = state.get("x0_lambdas", np.zeros(depth, np.float32))
        out.update({k: state[k] for k in ("smear_lambda", "backout_lambda")})
    return out
