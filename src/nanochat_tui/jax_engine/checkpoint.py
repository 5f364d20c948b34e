"""Checkpoints: orbax ``CheckpointManager`` with two items per step.

    RUN_DIR/checkpoints/<step>/state   model params + optimizer state (orbax pytree, atomic)
    RUN_DIR/checkpoints/<step>/meta    JSON (``meta/metadata``): step, run_name, stage, model, …,
                                       tokenizer_hash, data_position, val_bpb, train_loss, config

The meta JSON is readable without JAX (rundir.py). Saves are synchronous on CPU and
asynchronous on accelerators; ``close()`` waits for any save in flight.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from nanochat_tui import rundir
from nanochat_tui.errors import IncompatibleCheckpoint, UserError


def build_meta(
    config,
    *,
    step: int,
    run_name: str,
    tokenizer_hash: str,
    data_position: dict,
    val_bpb: float | None,
    train_loss: float | None,
) -> dict[str, Any]:
    """The per-checkpoint metadata (keys are a contract with the TUI and compat checks)."""
    from nanochat_tui.config.compat import plugin_flags

    m = config.model
    return {
        "step": int(step),
        "run_name": run_name,
        "stage": "base",
        "model": m.model_dump(mode="json"),
        "model_dim": m.model_dim,
        "n_head": m.n_head,
        "n_kv_head": m.kv_heads,
        "vocab_size": m.vocab_size,
        "sequence_len": m.sequence_len,
        "tokenizer_hash": tokenizer_hash,
        "data_position": dict(data_position),
        "val_bpb": None if val_bpb is None else float(val_bpb),
        "train_loss": None if train_loss is None else float(train_loss),
        "time": time.time(),
        "config": config.model_dump(mode="json"),
        "plugins": plugin_flags(config),
    }


class Checkpointer:
    """Save/restore (model, optimizer) + meta under ``run_dir/checkpoints``."""

    def __init__(self, run_dir: Path, keep: int = 3) -> None:
        self.root = Path(run_dir).resolve() / rundir.CHECKPOINTS
        async_ok = jax.default_backend() != "cpu"
        self.manager = ocp.CheckpointManager(
            self.root,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, enable_async_checkpointing=async_ok, create=True
            ),
            item_names=(rundir.STATE_ITEM, rundir.META_ITEM),
        )

    def save(self, step: int, model, optimizer, meta: dict[str, Any]) -> Path:
        state = {"model": nnx.state(model, nnx.Param), "optimizer": nnx.state(optimizer)}
        self.manager.save(
            step,
            args=ocp.args.Composite(
                **{
                    rundir.STATE_ITEM: ocp.args.StandardSave(state),
                    rundir.META_ITEM: ocp.args.JsonSave(meta),
                }
            ),
            force=True,
        )
        return self.root / str(step)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def resolve_step_dir(path: Path | str) -> Path:
    """A run dir (→ its latest checkpoint), a checkpoints/ dir, or a step dir → the step dir."""
    path = Path(path).expanduser().resolve()
    if (path / rundir.META_ITEM).is_dir() and path.name.isdigit():
        return path
    run = path.parent if path.name == rundir.CHECKPOINTS else path
    latest = rundir.latest_checkpoint(run)
    if latest is None:
        raise UserError(
            f"no checkpoint found in {path}",
            "pass a run directory that has checkpoints/ (train with `nanochat-tui run`) "
            "or a checkpoint step directory",
        )
    return latest.path


def read_meta(step_dir: Path) -> dict[str, Any]:
    meta = rundir.read_meta(step_dir)
    if meta is None:
        raise IncompatibleCheckpoint(
            f"{step_dir} has no readable metadata ({rundir.meta_path(step_dir)})",
            "pick another checkpoint; this one may be from an interrupted save",
        )
    return meta


def restore_into(step_dir: Path, model, optimizer=None) -> dict[str, Any]:
    """Load a step dir's weights (and optimizer state, when ``optimizer`` is given) in place.

    Returns the meta JSON. Raises IncompatibleCheckpoint when shapes don't match the model.
    """
    step_dir = Path(step_dir)
    meta = read_meta(step_dir)
    abstract: dict[str, Any] = {"model": nnx.state(model, nnx.Param)}
    if optimizer is not None:
        abstract["optimizer"] = nnx.state(optimizer)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract)
    try:
        with ocp.PyTreeCheckpointer() as ckptr:
            restored = ckptr.restore(
                step_dir / rundir.STATE_ITEM,
                args=ocp.args.PyTreeRestore(
                    item=abstract,
                    restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
                    partial_restore=True,
                ),
            )
    except Exception as err:
        raise IncompatibleCheckpoint(
            f"cannot load {step_dir}: {type(err).__name__}: {str(err).splitlines()[0][:300]}",
            "the checkpoint's model shape differs from this config; use the run's own "
            "config.yaml (or `nanochat-tui config show`) to match model.* settings",
        ) from None
    # partial_restore leaves what the checkpoint lacks as ShapeDtypeStructs: refuse, don't half-load
    missing = {
        part: [
            jax.tree_util.keystr(path)
            for path, leaf in jax.tree_util.tree_leaves_with_path(restored[part])
            if isinstance(leaf, jax.ShapeDtypeStruct)
        ]
        for part in restored
    }
    if missing.get("model"):
        raise IncompatibleCheckpoint(
            f"cannot load {step_dir}: it has no weights for {', '.join(missing['model'][:3])}",
            "the checkpoint's model differs from this config; use the run's own config.yaml",
        )
    if missing.get("optimizer"):
        raise IncompatibleCheckpoint(
            f"cannot resume from {step_dir}: its optimizer state has another layout (written by "
            f"another nanochat-tui version; missing {len(missing['optimizer'])} entries)",
            f"keep the weights and start a fresh optimizer: `nanochat-tui run PREFAB --set "
            f"run.init_from={step_dir}`",
        )
    nnx.update(model, restored["model"])
    if optimizer is not None:
        nnx.update(optimizer, restored["optimizer"])
    return meta
