"""``nanochat-tui import NANOCHAT_DIR OUT_RUN_DIR``: a karpathy/nanochat checkpoint as a run.

Reads ``model_<step>.pt`` + ``meta_<step>.json`` (nanochat's ``save_checkpoint``) and the
tokenizer (``tokenizer.pkl`` in the folder, ``--tokenizer``, or nanochat's own
``$NANOCHAT_BASE_DIR/tokenizer``), and writes a run directory (run_writer.py) that chat, eval,
serve and ``run.init_from`` accept.

Both revisions map one to one (nanochat_names.py): the 2025 GPT to the ``nanochat-2025`` recipe
(identity residual scalars, as nanochat patches into old checkpoints, dropped), the current GPT
(value embeddings, residual/x0 scalars, smear, backout, sliding windows) to ``nanochat-2026`` with
the checkpoint's ``window_pattern``. Anything else — an intermediate revision with only some of
those parameters, other shapes, parameters we do not know — is refused, naming it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from nanochat_tui.errors import UserError
from nanochat_tui.export.nanochat_format import require_torch
from nanochat_tui.export.nanochat_names import (
    NANOCHAT_COMMIT,
    from_nanochat,
    padded,
    revision_of,
)

_META = re.compile(r"^meta_(\d+)\.json$")
# nanochat's checkpoint folders (<base>/<stage>_checkpoints/<tag>) → our stage
STAGES = {"base": "pretrain", "mid": "sft", "chatsft": "sft", "chatrl": "sft"}


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


def build_config(meta: dict[str, Any], rows: int, name: str, revision: str = "2025"):
    """A Config of that nanochat revision's recipe shaped like the checkpoint (``rows`` =
    embedding rows)."""
    from nanochat_tui.config.compat import adopt
    from nanochat_tui.config.loader import ConfigError, apply_overrides
    from nanochat_tui.config.schema import Config

    nc = meta["model_config"]
    vocab = int(nc["vocab_size"])
    overrides: dict[str, Any] = {"run.name": name, "model.recipe": f"nanochat-{revision}"}
    if revision == "2026":
        # nanochat's S window is our short_window 0; the last layer is full context in both
        pattern = str(nc.get("window_pattern", "L")).upper()
        overrides |= {"model.window_pattern": pattern, "model.short_window": 0}
    if rows not in (vocab, padded(vocab)):
        raise UserError(
            f"the embedding has {rows} rows for a vocabulary of {vocab}",
            "nanochat-tui represents a vocabulary padded to a multiple of 64 only",
        )
    overrides["model.vocab_multiple"] = 1 if rows == vocab else 64
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


def our_weights(state: dict[str, np.ndarray], depth: int, revision: str) -> dict:
    """nanochat's names → ours (nanochat_names.from_nanochat); a missing key is a UserError."""
    try:
        return from_nanochat(state, depth, revision)
    except KeyError as err:
        raise UserError(
            f"the checkpoint has no {err.args[0]}", "is this a nanochat GPT checkpoint?"
        ) from None


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
    revision, problems = revision_of(state, meta["model_config"])
    if problems:
        raise UserError(
            f"cannot import {model_path}: it uses {'; '.join(problems)}, which nanochat-tui's "
            "recipes cannot represent",
            "import a checkpoint of nanochat's 2025 GPT or of its current GPT (commit "
            f"{NANOCHAT_COMMIT[:7]}), or train the same model here with model.recipe="
            "nanochat-2026",
        )
    tok = load_tokenizer(tok_path)
    vocab = int(meta["model_config"]["vocab_size"])
    if tok.vocab_size != vocab:
        raise UserError(
            f"{tok_path} has {tok.vocab_size} tokens, the checkpoint's vocab_size is {vocab}",
            "pass --tokenizer with the tokenizer this checkpoint was trained with",
        )
    rows = state.get("transformer.wte.weight", np.zeros((vocab, 0))).shape[0]
    config = build_config(meta, rows, out.name, revision)
    weights = our_weights(state, config.model.depth, revision)
    stage = STAGES.get(folder.parent.name.removesuffix("_checkpoints"), "pretrain")
    bpb = meta.get("val_bpb")
    metrics = (
        {"val_bpb": {"value": float(bpb), "step": chosen}} if isinstance(bpb, int | float) else {}
    )
    origin = {
        "format": "nanochat",
        "revision": revision,
        "path": str(model_path),
        "step": chosen,
    }
    return write_run(
        out, config, tok, weights, step=chosen, stage=stage, metrics=metrics, origin=origin
    )
