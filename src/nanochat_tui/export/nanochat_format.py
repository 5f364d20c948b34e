"""``--format nanochat``: karpathy/nanochat's own checkpoint layout, for its 2025 architecture.

    OUT/model_<step:06d>.pt     the GPT's state_dict (torch.save; fp32), nanochat's names:
                                transformer.wte.weight, transformer.h.<i>.attn.c_{q,k,v,proj}.weight,
                                transformer.h.<i>.mlp.c_{fc,proj}.weight, lm_head.weight
    OUT/meta_<step:06d>.json    step, val_bpb, model_config {sequence_len, vocab_size, n_layer,
                                n_head, n_kv_head, n_embd}, and where it came from
    OUT/tokenizer.pkl           the tokenizer as a pickled tiktoken Encoding (tiktoken_pkl.py)
    OUT/token_bytes.pt          UTF-8 bytes per token id (nanochat's bits-per-byte evaluation)

This is the folder HF's nanochat converter reads; for nanochat's own scripts move the first two
into ``$NANOCHAT_BASE_DIR/base_checkpoints/<tag>/`` and the last two into
``$NANOCHAT_BASE_DIR/tokenizer/`` (docs/export.md). Writing ``.pt`` needs torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nanochat_tui.errors import UserError
from nanochat_tui.export.hf import refusal
from nanochat_tui.export.source import ExportSource, atomic_file, write_text
from nanochat_tui.export.tiktoken_pkl import ranks_of, write_pkl

NANOCHAT_SOFTCAP = 15.0  # hard-coded in nanochat's 2025 GPT.forward
LAYER_KEYS = ("attn.c_q", "attn.c_k", "attn.c_v", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def require_torch():
    """The ``torch`` module, or a UserError saying how to install a (CPU) build."""
    try:
        import torch
    except ImportError:
        raise UserError(
            "nanochat's checkpoint format is torch's .pt files, and torch is not installed",
            "install it next to nanochat-tui: `uv pip install torch` (a CPU build is enough, "
            "e.g. `uv pip install --torch-backend cpu torch`), then run the command again",
        ) from None
    return torch


def check_exportable(source: ExportSource) -> None:
    """Refuse what nanochat's 2025 GPT cannot hold, then require torch."""
    why = refusal(source, "nanochat's 2025 GPT")
    if why is None and source.model.softcap != NANOCHAT_SOFTCAP:
        why = f"nanochat's 2025 GPT has its logit soft-cap fixed at 15, not {source.model.softcap}"
    if why:
        raise UserError(
            f"cannot export {source.path} as a nanochat checkpoint: {why}",
            "export it with --format onnx instead, or train with model.recipe=nanochat-2025",
        )
    require_torch()


def state_dict(weights: dict[str, np.ndarray], depth: int) -> dict[str, np.ndarray]:
    """Our weights under nanochat's names and torch's ``[out, in]`` layout."""
    out = {"transformer.wte.weight": weights["wte"]}
    for i in range(depth):
        for key in LAYER_KEYS:
            out[f"transformer.h.{i}.{key}.weight"] = weights[f"blocks.{i}.{key}"].T
    out["lm_head.weight"] = weights["lm_head"].T
    return {k: np.array(v, np.float32, order="C") for k, v in out.items()}  # writable copies


def model_config(m) -> dict[str, int]:
    """nanochat's ``GPTConfig`` fields for the model section ``m``."""
    return {
        "sequence_len": m.sequence_len,
        "vocab_size": m.vocab_size,
        "n_layer": m.depth,
        "n_head": m.n_head,
        "n_kv_head": m.kv_heads,
        "n_embd": m.model_dim,
    }


def export_nanochat(source: ExportSource, out: Path) -> list[Path]:
    """Write the nanochat checkpoint folder into ``out``; returns the files."""
    from nanochat_tui.jax_engine.tokenizer import SPLIT_PATTERN

    torch = require_torch()
    step = int(source.meta.get("step", 0))
    tensors = {
        k: torch.from_numpy(v) for k, v in state_dict(source.weights, source.model.depth).items()
    }
    model_path = out / f"model_{step:06d}.pt"
    with atomic_file(model_path) as tmp:
        torch.save(tensors, tmp)
    meta = {
        "step": step,
        "val_bpb": source.meta.get("val_bpb"),
        "model_config": model_config(source.model),
        "nanochat_tui": {
            "run_name": source.meta.get("run_name"),
            "stage": source.meta.get("stage"),
            "checkpoint": str(source.path),
            "tokenizer_hash": source.tokenizer.hash,
        },
    }
    meta_path = out / f"meta_{step:06d}.json"
    write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    ranks, specials = ranks_of(source.tokenizer)
    write_pkl(out / "tokenizer.pkl", SPLIT_PATTERN, ranks, specials, "rustbpe")
    bytes_path = out / "token_bytes.pt"
    with atomic_file(bytes_path) as tmp:
        torch.save(torch.from_numpy(source.tokenizer.token_bytes()), tmp)
    return [model_path, meta_path, out / "tokenizer.pkl", bytes_path]
