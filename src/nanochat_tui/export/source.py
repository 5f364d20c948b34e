"""A checkpoint loaded for export: its config, tokenizer, meta and fp32 weights as NumPy arrays.

Weights are keyed by their path in the model (``wte``, ``blocks.0.attn.c_q``, ``lm_head``,
``resid_lambdas`` ...), kernels in our ``[in, out]`` layout; each format module renames and
transposes them for its target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nanochat_tui.errors import UserError


@dataclass
class ExportSource:
    """What every exporter reads: ``weights`` (fp32 NumPy), the run's config and tokenizer."""

    path: Path  # the checkpoint step directory
    config: Any  # Config
    tokenizer: Any  # jax_engine.tokenizer.Tokenizer
    meta: dict[str, Any]
    weights: dict[str, np.ndarray]

    @property
    def model(self):
        """The model section with every recipe switch resolved."""
        return self.config.model.resolved()


def param_arrays(model) -> dict[str, np.ndarray]:
    """Every ``nnx.Param`` of ``model`` as a float32 NumPy array keyed by its dotted path."""
    from flax import nnx

    out: dict[str, np.ndarray] = {}
    for path, value in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        name = ".".join(str(p) for p in path)
        name = name.removesuffix(".kernel").removesuffix(".embedding").removesuffix(".value")
        out[name] = np.asarray(value[...], np.float32)
    return out


def load_source(path: Path | str) -> ExportSource:
    """Load a run directory (its latest checkpoint) or a step directory, in fp32."""
    from nanochat_tui.jax_engine.inference import ChatModel

    cm = ChatModel.load(path)
    return ExportSource(cm.path, cm.config, cm.tokenizer, cm.meta, param_arrays(cm.model))


def check_out_dir(out: Path | str, *, force: bool) -> Path:
    """Refuse an output path that is a file, or a non-empty directory unless ``force``."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a directory", "pick another output path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(
            f"{out} is not empty",
            "pick a new output directory, or pass --force to overwrite the files written there",
        )
    return out


def prepare_out_dir(out: Path | str, *, force: bool) -> Path:
    """``out`` checked (``check_out_dir``) and created."""
    out = check_out_dir(out, force=force)
    out.mkdir(parents=True, exist_ok=True)
    return out
