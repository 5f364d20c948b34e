"""``--format nanochat``: karpathy/nanochat's own checkpoint layout, for either of its revisions.

    OUT/model_<step:06d>.pt     the GPT's state_dict (torch.save; fp32) under nanochat's names
                                (nanochat_names.py): the 2025 GPT's for a model HF's nanochat type
                                loads, the current (2026) GPT's — value embeddings, residual/x0
                                scalars, smear, backout, rows padded to 64 — for a nanochat-2026 one
    OUT/meta_<step:06d>.json    step, val_bpb, model_config {sequence_len, vocab_size, n_layer,
                                n_head, n_kv_head, n_embd[, window_pattern]}, and where it came from
    OUT/tokenizer.pkl           the tokenizer as a pickled tiktoken Encoding (tiktoken_pkl.py)
    OUT/token_bytes.pt          UTF-8 bytes per token id (nanochat's bits-per-byte evaluation)

HF's nanochat converter reads the 2025 folder; for nanochat's own scripts move the first two
into ``$NANOCHAT_BASE_DIR/base_checkpoints/<tag>/`` and the last two into
``$NANOCHAT_BASE_DIR/tokenizer/`` (docs/export.md). A model matching neither revision (a switch
nanochat's code fixes set otherwise) is refused with the switches. Writing ``.pt`` needs torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from nanochat_tui.errors import UserError
from nanochat_tui.export.hf import refusal
from nanochat_tui.export.nanochat_names import (
    SMEAR_CHANNELS,
    SOFTCAP,
    SWITCHES_2026,
    to_nanochat,
)
from nanochat_tui.export.source import ExportSource
from nanochat_tui.export.tiktoken_pkl import ranks_of, write_pkl
from nanochat_tui.rundir import atomic_path, write_atomic


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


def not_2026(m) -> list[str]:
    """What in the resolved model section ``m`` nanochat's current (2026) GPT fixes otherwise."""
    out = [f"model.{k}={getattr(m, k)}" for k, v in SWITCHES_2026.items() if getattr(m, k) != v]
    if m.softcap != SOFTCAP:
        out.append(f"model.softcap={m.softcap} (nanochat: 15)")
    if m.window_sizes() != m.model_copy(update={"short_window": 0}).window_sizes():
        out.append(
            f"model.short_window={m.short_window} (nanochat's S window is "
            f"ceil(sequence_len/4) rounded up to 128 tokens: set it to 0)"
        )
    if getattr(m, "blocks", None) is not None:  # the designer's per-block settings
        out.append("per-block settings (model.blocks: nanochat's blocks are all alike)")
    if m.model_dim < SMEAR_CHANNELS:
        out.append(f"a width of {m.model_dim} (nanochat's smear gate reads {SMEAR_CHANNELS})")
    return out


def revision(source: ExportSource) -> str:
    """``"2025"`` or ``"2026"``: the nanochat GPT that holds ``source`` exactly; else a UserError
    naming what neither can represent."""
    m = source.model
    old = refusal(source, "nanochat's 2025 GPT")
    if old is None and m.softcap != SOFTCAP:
        old = f"nanochat's 2025 GPT has its logit soft-cap fixed at 15, not {m.softcap}"
    if old is None:
        return "2025"
    new = not_2026(m)
    if not new:
        return "2026"
    raise UserError(
        f"cannot export {source.path} as a nanochat checkpoint: {old}; "
        f"nanochat's current (2026) GPT cannot represent {', '.join(new)}",
        "export it with --format onnx instead, or train with model.recipe=nanochat-2025 or "
        "nanochat-2026 and those switches at the recipe's values",
    )


def check_exportable(source: ExportSource) -> None:
    """Refuse what neither nanochat revision can hold, then require torch."""
    revision(source)
    require_torch()


def model_config(m, revision: str = "2025") -> dict[str, int | str]:
    """nanochat's ``GPTConfig`` fields for the model section ``m`` (exactly those: nanochat builds
    ``GPTConfig(**model_config)``)."""
    out: dict[str, int | str] = {
        "sequence_len": m.sequence_len,
        "vocab_size": m.vocab_size,
        "n_layer": m.depth,
        "n_head": m.n_head,
        "n_kv_head": m.kv_heads,
        "n_embd": m.model_dim,
    }
    if revision == "2026":
        out["window_pattern"] = (m.window_pattern or "L").upper()
    return out


def export_nanochat(source: ExportSource, out: Path) -> list[Path]:
    """Write the nanochat checkpoint folder into ``out``; returns the files."""
    from nanochat_tui.jax_engine.tokenizer import SPLIT_PATTERN

    torch = require_torch()
    which = revision(source)
    step = int(source.meta.get("step", 0))
    m = source.model
    named = to_nanochat(source.weights, m.depth, which, m.vocab_size)
    tensors = {k: torch.from_numpy(v) for k, v in named.items()}
    model_path = out / f"model_{step:06d}.pt"
    with atomic_path(model_path) as tmp:
        torch.save(tensors, tmp)
    meta = {
        "step": step,
        "val_bpb": source.meta.get("val_bpb"),
        "model_config": model_config(source.model, which),
        "nanochat_tui": {
            "run_name": source.meta.get("run_name"),
            "stage": source.meta.get("stage"),
            "checkpoint": str(source.path),
            "tokenizer_hash": source.tokenizer.hash,
            "nanochat_revision": which,
        },
    }
    meta_path = out / f"meta_{step:06d}.json"
    write_atomic(meta_path, json.dumps(meta, indent=2) + "\n")
    ranks, specials = ranks_of(source.tokenizer)
    write_pkl(out / "tokenizer.pkl", SPLIT_PATTERN, ranks, specials, "rustbpe")
    bytes_path = out / "token_bytes.pt"
    with atomic_path(bytes_path) as tmp:
        torch.save(torch.from_numpy(source.tokenizer.token_bytes()), tmp)
    return [model_path, meta_path, out / "tokenizer.pkl", bytes_path]
