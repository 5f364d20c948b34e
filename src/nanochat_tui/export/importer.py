"""``nanochat-tui import NANOCHAT_DIR OUT_RUN_DIR``: a karpathy/nanochat checkpoint as a run.

Reads ``model_<step>.pt`` + ``meta_<step>.json`` (nanochat's ``save_checkpoint``) and the
tokenizer (``tokenizer.pkl`` in the folder, ``--tokenizer``, or nanochat's own
``$NANOCHAT_BASE_DIR/tokenizer``), and writes a run directory (run_writer.py) under the
``nanochat-2025`` recipe that chat, eval, serve and ``run.init_from`` accept.

nanochat's 2025 GPT maps one to one. Later revisions add parameters (value embeddings, smear,
backout, learned residual scalars, sliding windows) whose constants live in nanochat's code, not
in the checkpoint; one that uses them is refused with the list. Identity residual scalars (all
ones and zeros, as nanochat patches into old checkpoints) are dropped.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from nanochat_tui.errors import UserError
from nanochat_tui.export.nanochat_format import LAYER_KEYS, require_torch

_META = re.compile(r"^meta_(\d+)\.json$")
# nanochat's checkpoint folders (<base>/<stage>_checkpoints/<tag>) → our stage
STAGES = {"base": "pretrain", "mid": "sft", "chatsft": "sft", "chatrl": "sft"}
# state_dict keys of later nanochat revisions → the feature they belong to
FEATURES = {
    "value_embeds.": "value embeddings (value_embeds.*)",
    ".ve_gate.": "value-embedding gates (attn.ve_gate)",
    "smear_gate": "smear (smear_gate)",
    "smear_lambda": "smear (smear_lambda)",
    "backout_lambda": "backout (backout_lambda)",
}


def find_checkpoint(folder: Path, step: int | None) -> tuple[Path, Path, int]:
    """(meta json, model .pt, step) in ``folder``: ``step`` or the latest."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"{folder} is not a directory", "pass a nanochat checkpoint folder")
    steps = sorted(int(m.group(1)) for p in folder.iterdir() if (m := _META.match(p.name)))
    if not steps:
        raise UserError(
            f"{folder} has no meta_<step>.json",
            "pass a nanochat checkpoint folder, e.g. ~/.cache/nanochat/base_checkpoints/d20",
        )
    if step is not None and step not in steps:
        raise UserError(f"{folder} has no step {step}", f"pick one of {steps}")
    chosen = steps[-1] if step is None else step
    model = folder / f"model_{chosen:06d}.pt"
    if not model.is_file():
        raise UserError(f"{model} is missing", "copy the model_<step>.pt next to its meta json")
    return folder / f"meta_{chosen:06d}.json", model, chosen


def find_tokenizer(folder: Path, explicit: str | None) -> Path:
    """The tokenizer to import with: ``--tokenizer``, the folder's, or nanochat's base dir's."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UserError(f"--tokenizer {path} does not exist", "check the path")
        return path
    base = os.environ.get("NANOCHAT_BASE_DIR")
    candidates = [folder / "tokenizer.pkl", folder / "tokenizer.json"]
    if base:
        candidates.append(Path(base).expanduser() / "tokenizer" / "tokenizer.pkl")
    candidates.append(
        folder.parent.parent / "tokenizer" / "tokenizer.pkl"
    )  # <base>/x_checkpoints/tag
    for path in candidates:
        if path.is_file():
            return path
    raise UserError(
        f"no tokenizer found for {folder} (looked for {', '.join(str(c) for c in candidates)})",
        "pass --tokenizer PATH to nanochat's tokenizer.pkl ($NANOCHAT_BASE_DIR/tokenizer)",
    )


def load_tokenizer(path: Path):
    """Our Tokenizer from nanochat's tokenizer.pkl (or a tokenizer.json)."""
    from nanochat_tui.export.tiktoken_pkl import read_pkl, tokenizer_from_ranks
    from nanochat_tui.jax_engine.tokenizer import Tokenizer

    if path.suffix == ".json":
        return Tokenizer.load(path)
    return tokenizer_from_ranks(*read_pkl(path))


def read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: {err}", "is the checkpoint complete?") from None
    config = meta.get("model_config") if isinstance(meta, dict) else None
    need = ("sequence_len", "vocab_size", "n_layer", "n_head", "n_embd")
    if not isinstance(config, dict) or any(k not in config for k in need):
        raise UserError(
            f"{path} has no model_config with {', '.join(need)}",
            "this is not a nanochat checkpoint's meta json",
        )
    return meta


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The .pt state dict as fp32 NumPy arrays (``_orig_mod.`` prefixes of compiled models
    dropped)."""
    torch = require_torch()
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(
            f"cannot read {path}: {str(err).splitlines()[0][:200]}",
            "is the file complete? re-copy it",
        ) from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} is not a state_dict", "pass nanochat's model_<step>.pt")
    return {k.removeprefix("_orig_mod."): v.detach().float().cpu().numpy() for k, v in raw.items()}


def unsupported(state: dict[str, np.ndarray], config: dict[str, Any]) -> list[str]:
    """The features of a later nanochat this checkpoint uses that we cannot represent."""
    found = sorted({label for key in state for part, label in FEATURES.items() if part in key})
    for name, identity in (("resid_lambdas", 1.0), ("x0_lambdas", 0.0)):
        if name in state and not np.all(state[name] == identity):
            found.append(f"learned residual scalars ({name})")
    pattern = str(config.get("window_pattern", "L")).upper()
    if set(pattern) - {"L"}:
        found.append(f"sliding-window attention (window_pattern {pattern})")
    return found


def build_config(meta: dict[str, Any], rows: int, name: str):
    """A nanochat-2025 Config shaped like the checkpoint (``rows`` = embedding rows)."""
    from nanochat_tui.config.compat import adopt
    from nanochat_tui.config.loader import ConfigError, apply_overrides
    from nanochat_tui.config.schema import Config

    nc = meta["model_config"]
    vocab = int(nc["vocab_size"])
    overrides: dict[str, Any] = {"run.name": name, "model.recipe": "nanochat-2025"}
    if rows != vocab:
        if rows != -(-vocab // 64) * 64:
            raise UserError(
                f"the embedding has {rows} rows for a vocabulary of {vocab}",
                "nanochat-tui represents a vocabulary padded to a multiple of 64 only",
            )
        overrides["model.vocab_multiple"] = 64
    try:
        config = apply_overrides(adopt(Config(), meta), overrides)
    except (ConfigError, ValueError) as err:
        config, detail = None, f": {err}"
    else:
        m = config.model
        ours = (m.depth, m.model_dim, m.n_head, m.kv_heads)
        theirs = (nc["n_layer"], nc["n_embd"], nc["n_head"], nc.get("n_kv_head", nc["n_head"]))
        detail = "" if ours == tuple(int(v) for v in theirs) else f" (it became {ours})"
    if detail:
        raise UserError(
            f"nanochat's model_config {nc} has no nanochat-tui equivalent{detail}",
            "nanochat-tui needs n_embd to be a multiple of n_layer (≥ 8 per layer) and of n_head",
        )
    return config


def our_weights(state: dict[str, np.ndarray], depth: int) -> dict[str, np.ndarray]:
    """nanochat's names → ours (``[in, out]`` kernels); a missing key is a UserError."""
    try:
        out = {"wte": state["transformer.wte.weight"], "lm_head": state["lm_head.weight"].T}
        for i in range(depth):
            for key in LAYER_KEYS:
                out[f"blocks.{i}.{key}"] = state[f"transformer.h.{i}.{key}.weight"].T
    except KeyError as err:
        raise UserError(
            f"the checkpoint has no {err.args[0]}", "is this a nanochat GPT checkpoint?"
        ) from None
    return out


def import_checkpoint(
    folder: Path | str, out: Path | str, *, step: int | None = None, tokenizer: str | None = None
) -> Path:
    """Import a nanochat checkpoint folder as the run directory ``out``; returns its step dir."""
    from nanochat_tui.export.run_writer import write_run

    folder = Path(folder).expanduser().resolve()
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists", "pick a new run directory name")
    meta_path, model_path, chosen = find_checkpoint(folder, step)
    meta = read_meta(meta_path)
    tok_path = find_tokenizer(folder, tokenizer)
    state = load_state_dict(model_path)
    problems = unsupported(state, meta["model_config"])
    if problems:
        raise UserError(
            f"cannot import {model_path}: it uses {'; '.join(problems)}, which nanochat-tui "
            "cannot represent in a nanochat checkpoint import",
            "import a checkpoint of nanochat's 2025 GPT (before these features), or train the "
            "same model here with model.recipe=nanochat-2026",
        )
    tok = load_tokenizer(tok_path)
    vocab = int(meta["model_config"]["vocab_size"])
    if tok.vocab_size != vocab:
        raise UserError(
            f"{tok_path} has {tok.vocab_size} tokens, the checkpoint's vocab_size is {vocab}",
            "pass --tokenizer with the tokenizer this checkpoint was trained with",
        )
    rows = state.get("transformer.wte.weight", np.zeros((vocab, 0))).shape[0]
    config = build_config(meta, rows, out.name)
    weights = our_weights(state, config.model.depth)
    stage = STAGES.get(folder.parent.name.removesuffix("_checkpoints"), "pretrain")
    bpb = meta.get("val_bpb")
    metrics = (
        {"val_bpb": {"value": float(bpb), "step": chosen}} if isinstance(bpb, int | float) else {}
    )
    origin = {"format": "nanochat", "path": str(model_path), "step": chosen}
    return write_run(
        out, config, tok, weights, step=chosen, stage=stage, metrics=metrics, origin=origin
    )
