"""Write a run directory from weights that did not come from a training run (an import).

The result is an ordinary run directory (rundir.py): ``config.yaml``, ``tokenizer.json``, one
orbax checkpoint with its meta JSON, and an ``events.jsonl`` that says where it came from, so
chat, eval, serve, the Checkpoints pane and ``run.init_from`` read it like any run. The optimizer
state saved with it is fresh: fine-tune from it with ``run.init_from``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from nanochat_tui import rundir
from nanochat_tui.errors import UserError


def load_weights(model, weights: dict[str, np.ndarray]) -> None:
    """Set every parameter of ``model`` from ``weights`` (keyed as ``source.param_arrays``);
    a missing or misshapen entry is a UserError naming it."""
    import jax.numpy as jnp
    from flax import nnx

    from nanochat_tui.export.source import param_arrays

    want = param_arrays(model)
    missing = sorted(set(want) - set(weights))
    if missing:
        raise UserError(f"no weights for {', '.join(missing[:4])}", "the checkpoint is incomplete")
    for name, ref in want.items():
        if weights[name].shape != ref.shape:
            raise UserError(
                f"{name} has shape {weights[name].shape}, the model needs {ref.shape}",
                "the checkpoint's model_config does not describe its weights",
            )
    state = nnx.state(model, nnx.Param)
    flat = nnx.to_flat_state(state)
    for path, var in flat:
        name = ".".join(str(p) for p in path)
        name = name.removesuffix(".kernel").removesuffix(".embedding")
        var[...] = jnp.asarray(weights[name], jnp.float32)
    nnx.update(model, nnx.from_flat_state(flat))


def write_run(
    out: Path,
    config,
    tokenizer,
    weights: dict[str, np.ndarray],
    *,
    step: int,
    stage: str,
    metrics: dict[str, dict[str, Any]] | None = None,
    origin: dict[str, Any] | None = None,
) -> Path:
    """Create the run directory ``out`` (must not exist or be empty); returns the step dir."""
    from flax import nnx

    from nanochat_tui.config.loader import to_yaml
    from nanochat_tui.jax_engine.checkpoint import Checkpointer, build_meta
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.optim import build_optimizer
    from nanochat_tui.telemetry.events import make_event

    out = Path(out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists", "pick a new run directory name")
    model = GPT(config.model, rngs=nnx.Rngs(0))
    load_weights(model, weights)
    optimizer = nnx.Optimizer(model, build_optimizer(model, config), wrt=nnx.Param)
    meta = build_meta(
        config,
        step=step,
        run_name=out.name,
        stage=stage,
        reason="import",
        tokenizer_hash=tokenizer.hash,
        data_position={},
        metrics=metrics or {},
    )
    if origin:
        meta["origin"] = origin
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        tokenizer.save(out / rundir.TOKENIZER)
        rundir.write_atomic(out / rundir.CONFIG, to_yaml(config))
        ckpt = Checkpointer(out, keep=1)
        try:
            step_dir = ckpt.save(step, model, optimizer, meta, "import")
            ckpt.wait()
        finally:
            ckpt.close()
    except BaseException:
        if created:  # no half-written run directory is left behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    where = (origin or {}).get("path", "elsewhere")
    events = [
        make_event("log", step=step, level="info", message=f"imported from {where}"),
        make_event("checkpoint", step=step, path=str(step_dir), reason="import"),
        make_event("run_end", step=step, status="finished", final_val_bpb=meta.get("val_bpb")),
    ]
    rundir.write_atomic(out / rundir.EVENTS, "".join(json.dumps(e) + "\n" for e in events))
    return step_dir
