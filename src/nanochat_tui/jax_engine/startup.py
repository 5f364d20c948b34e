"""Start-up of a run: tokenizer, the task's data, model and optimizer, and the resume point.

Each part is a ``phase`` event. On resume everything that can refuse it (no usable checkpoint,
another tokenizer, a model change, a damaged checkpoint) runs here, before the loop writes a file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nanochat_tui import rundir
from nanochat_tui.errors import IncompatibleCheckpoint, ResumeRefused
from nanochat_tui.jax_engine.run_state import RunState


def setup(run: RunState, resume: bool):
    """Tokenizer, the task's data, model and optimizer (restored on resume): the start-up phases."""
    from flax import nnx

    from nanochat_tui.config.compat import check
    from nanochat_tui.jax_engine import checkpoint as ckpt
    from nanochat_tui.jax_engine.flops import compute_dtype
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.optim import build_optimizer
    from nanochat_tui.jax_engine.sharding import is_primary, placement
    from nanochat_tui.jax_engine.tasks import get_task
    from nanochat_tui.jax_engine.tokenizer import Tokenizer, get_tokenizer

    config, run_dir = run.config, run.run_dir
    place = placement(config)  # a mesh that does not divide is refused before any work
    task_class = get_task(config.train.stage)  # so is a stage whose plugin class does not load
    run.phase("tokenizer")
    start = None
    if resume:
        start = resume_point(run)
        tok_path = run_dir / rundir.TOKENIZER
        if not tok_path.is_file():
            raise IncompatibleCheckpoint(
                f"{tok_path} is missing", "resume needs the run's own tokenizer.json"
            )
        tokenizer = Tokenizer.load(tok_path)
        check_tokenizer(start.meta, tokenizer, start.path)
        problems = [
            p for p in check(config, start.meta, suggest_prefab=False) if p.field != "tokenizer"
        ]
        if problems:
            raise IncompatibleCheckpoint(
                f"cannot resume {start.path}: " + "; ".join(p.reason for p in problems),
                "resume with the run's own config.yaml; "
                + "; ".join(p.remediation for p in problems),
            )
    else:
        tokenizer = _init_tokenizer(config) or get_tokenizer(config, log=run.log)
        if is_primary():  # the others trained the same one (deterministic): no file race
            tokenizer.save(run_dir / rundir.TOKENIZER)
    if tokenizer.vocab_size > config.model.vocab_size:
        raise IncompatibleCheckpoint(
            f"tokenizer has {tokenizer.vocab_size} ids but model.vocab_size is {config.model.vocab_size}",
            f"set model.vocab_size={tokenizer.vocab_size}",
        )

    run.phase("data")
    task = task_class(config, tokenizer, run.log)
    run.headline = task.headline
    start_fields = task.prepare()
    if start_fields.get("unigram_bpb") is not None:
        run.metrics["unigram_bpb"] = {"value": float(start_fields["unigram_bpb"]), "step": 0}

    run.phase("model")
    hooks = run.hooks

    def make() -> tuple[GPT, nnx.Optimizer]:
        model = GPT(
            config.model,
            rngs=nnx.Rngs(config.train.seed),
            dtype=compute_dtype(config),
            mlp=hooks.mlp if hooks is not None else None,
        )
        return model, nnx.Optimizer(model, build_optimizer(model, config, hooks), wrt=nnx.Param)

    # built on the mesh (no device holds a whole fsdp-split array); a restore lands on it too
    model, optimizer = place.build_sharded(make)
    if start is not None:
        ckpt.restore_into(start.path, model, optimizer)
        run.step = int(start.meta["step"])
        run.last_checkpoint = start.path
        for name, entry in (start.meta.get("metrics") or {}).items():
            if isinstance(entry, dict) and "value" in entry:
                run.metrics.setdefault(name, entry)
        if "val_bpb" not in run.metrics and start.meta.get("val_bpb") is not None:
            run.metrics["val_bpb"] = {"value": start.meta["val_bpb"], "step": None}
    elif config.run.init_from:
        init_dir = ckpt.resolve_step_dir(config.run.init_from)
        init_meta = ckpt.read_meta(init_dir)
        check_tokenizer(init_meta, tokenizer, init_dir)
        ckpt.restore_into(init_dir, model)
        run.log(f"initialised weights from {init_dir}")
        start_fields["initialised_from"] = {"path": str(init_dir), "step": init_meta.get("step")}
    meta = start.meta if start is not None else None
    return task, model, optimizer, tokenizer, meta, start_fields


def _init_tokenizer(config: Any):
    """With ``run.init_from`` (and no ``data.tokenizer``), the base run's own tokenizer: its ids
    are the ones the weights learned. None when that run dir has no tokenizer.json."""
    from nanochat_tui.jax_engine import checkpoint as ckpt
    from nanochat_tui.jax_engine.tokenizer import Tokenizer

    if not config.run.init_from or config.data.tokenizer:
        return None
    path = ckpt.resolve_step_dir(config.run.init_from).parent.parent / rundir.TOKENIZER
    return Tokenizer.load(path) if path.is_file() else None


def resume_point(run: RunState) -> rundir.CheckpointInfo:
    """The newest listed checkpoint; warns about steps whose metadata cannot be read."""
    damaged = rundir.damaged_checkpoints(run.run_dir)
    latest = rundir.latest_checkpoint(run.run_dir)
    names = ", ".join(p.name for p in damaged)
    if latest is None:
        why = f" (checkpoint {names} has unreadable metadata)" if damaged else ""
        raise ResumeRefused(
            f"nothing to resume in {run.run_dir}: it has no usable checkpoints{why}",
            "start a new run instead (drop --resume)",
        )
    for path in damaged:
        run.log(
            f"checkpoint {path.name} has unreadable metadata ({rundir.meta_path(path)}) and is "
            f"skipped; resuming from step {latest.step}",
            "warning",
        )
    return latest


def set_aside_damaged(run: RunState, resumed_from: int) -> None:
    """Rename unreadable step dirs newer than the resume point out of the checkpoint list (their
    step numbers will be saved again); nothing is deleted."""
    for path in rundir.damaged_checkpoints(run.run_dir):
        if int(path.name) > resumed_from:
            aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
            path.rename(aside)
            run.log(f"moved damaged checkpoint {path.name} aside to {aside}", "warning")


def check_tokenizer(meta: dict[str, Any], tokenizer, step_dir: Path) -> None:
    """Refuse a checkpoint trained with another tokenizer."""
    want = meta.get("tokenizer_hash")
    if want and want != tokenizer.hash:
        raise IncompatibleCheckpoint(
            f"checkpoint {step_dir} was trained with tokenizer {want}, but this run's tokenizer is "
            f"{tokenizer.hash}",
            "use the checkpoint's own run directory (its tokenizer.json), or set data.tokenizer to "
            "that tokenizer.json",
        )
