"""Checkpoints: orbax ``CheckpointManager`` with two items per step.

    RUN_DIR/checkpoints/<step>/state   model params + optimizer state (orbax pytree, atomic)
    RUN_DIR/checkpoints/<step>/meta    JSON (``meta/metadata``): step, run_name, stage, reason,
                                       model, …, tokenizer_hash, data_position, metrics, config
    RUN_DIR/checkpoints/<step>/files.json  every file's size, once committed (checkpoint_files.py)

The meta JSON is readable without JAX (rundir.py). Saves are asynchronous on every backend: the
device→host copy happens in ``save``, the writes in orbax's background thread; orbax writes into a
temporary directory and renames it when complete, so a kill mid-save never leaves a listed,
broken step. ``wait()`` blocks until saves in flight are committed (stop, final, exit, and before
anything reads a checkpoint); ``completed()`` says which have been committed since last asked.
Rotation keeps the newest ``keep`` steps plus every pinned one (``rundir.read_pins``, read at each
rotation) and, while the loss is diverging, the newest one from before (``held_below``);
rotated-out steps are renamed into ``checkpoints/.trash`` (atomic) and removed there.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx
from orbax.checkpoint import checkpoint_managers as policies

from nanochat_tui import checkpoint_files, rundir
from nanochat_tui.errors import DiskFull, IncompatibleCheckpoint, UserError, is_disk_full


def build_meta(
    config,
    *,
    step: int,
    run_name: str,
    stage: str,
    reason: str,
    tokenizer_hash: str,
    data_position: dict,
    metrics: dict[str, dict[str, Any]],
    plugin_shape: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The per-checkpoint metadata (keys are a contract with the TUI and compat checks).

    ``metrics`` maps a name (``train_loss``, ``val_bpb``, ...) to ``{"value", "step"}``: the step
    each was measured at, so a reader can tell a current value from a stale one. ``val_bpb`` and
    ``train_loss`` are also kept as top-level values for older readers. ``plugin_shape`` holds
    the plugin fields that shape parameters (``plugins.moe.num_experts``: 8), which a resume and
    the compatibility checks compare.
    """
    from nanochat_tui.config.compat import plugin_flags
    from nanochat_tui.config.recipes import hf_loadable, switches

    m = config.model

    def value(name: str) -> float | None:
        v = metrics.get(name, {}).get("value")
        return None if v is None else float(v)

    return {
        "step": int(step),
        "run_name": run_name,
        "stage": stage,
        "reason": reason,
        "model": m.model_dump(mode="json"),
        "switches": switches(config),  # every recipe switch, resolved (export refuses by these)
        "hf_unloadable": hf_loadable(m),
        "model_dim": m.model_dim,
        "n_head": m.n_head,
        "n_kv_head": m.kv_heads,
        "vocab_size": m.vocab_size,
        "sequence_len": m.sequence_len,
        "tokenizer_hash": tokenizer_hash,
        "data_position": dict(data_position),
        "metrics": {k: dict(v) for k, v in metrics.items()},
        "val_bpb": value("val_bpb"),
        "train_loss": value("train_loss"),
        "time": time.time(),
        "config": config.model_dump(mode="json"),
        "plugins": plugin_flags(config),
        "lineage": {
            "init_from": config.run.init_from,
            "project": config.align.project,
            "soul_version": config.align.soul_version,
        },
        "plugin_shape": dict(plugin_shape or {}),
    }


@dataclass(frozen=True)
class _Pinned:
    """Orbax preservation policy: keep the steps pinned in the run's pins.json."""

    run_dir: Path

    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        pins = rundir.read_pins(self.run_dir)
        return [info.step in pins for info in checkpoints]


@dataclass(frozen=True)
class _Held:
    """Orbax preservation policy: keep the newest step below the checkpointer's ``held_below``
    (the last one from before a divergence, while the loss is over the watch's threshold)."""

    checkpointer: Checkpointer

    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        below = self.checkpointer.held_below
        steps = [info.step for info in checkpoints]
        newest = max((s for s in steps if below is not None and s < below), default=None)
        return [s == newest for s in steps]


class Checkpointer:
    """Save/restore (model, optimizer) + meta under ``run_dir/checkpoints``."""

    def __init__(self, run_dir: Path, keep: int = 3) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.root = self.run_dir / rundir.CHECKPOINTS
        # Every process saves its own shards through orbax; only process 0 touches pins and trash.
        self._primary = jax.process_index() == 0
        self._keep = keep
        self._pending: list[tuple[int, str]] = []
        self._saved: set[int] = set()
        # rotation keeps the newest step below this one (set while the loss is diverging)
        self.held_below: int | None = None
        self.manager = ocp.CheckpointManager(
            self.root,
            options=ocp.CheckpointManagerOptions(
                enable_async_checkpointing=True,
                create=True,
                todelete_subdir=rundir.TRASH,
                preservation_policy=policies.AnyPreservationPolicy(
                    [policies.LatestN(n=keep), _Pinned(self.run_dir), _Held(self)]
                ),
            ),
            item_names=(rundir.STATE_ITEM, rundir.META_ITEM),
        )
        self._writing: int | None = None  # the step of the last save started
        self._state_bytes = 0  # its size in memory: what a save needs on disk, roughly
        self._failed: DiskFull | None = None
        _route_orbax_unraisable()  # the writes a failed save abandons stay off the terminal
        self._empty_trash()

    def save(self, step: int, model, optimizer, meta: dict[str, Any], reason: str) -> Path:
        """Start saving; returns the step dir it will have once committed (see ``completed``).

        A step saved already (an interval save, then a manual one at the same step) is not
        written twice; the request is still reported, and a manual one still pins the step.
        """
        if reason == "manual" and self._primary:
            rundir.set_pinned(self.run_dir, step, True)
        if step in self._saved or step in self.manager.all_steps():
            self._pending.append((step, reason))
            return self.root / str(step)
        self._saved.add(step)
        state = {"model": nnx.state(model, nnx.Param), "optimizer": nnx.state(optimizer)}
        self._writing = step
        self._state_bytes = sum(getattr(x, "nbytes", 0) for x in jax.tree.leaves(state))
        self._call(
            self.manager.save,
            step,
            args=ocp.args.Composite(
                **{
                    rundir.STATE_ITEM: ocp.args.StandardSave(state),
                    rundir.META_ITEM: ocp.args.JsonSave(meta),
                }
            ),
            force=True,
        )
        self._pending.append((step, reason))
        return self.root / str(step)

    def completed(self) -> list[tuple[int, str, Path]]:
        """Saves committed since the last call, as ``(step, reason, step_dir)``; never blocks.

        Orbax writes one save at a time and renames it into place when complete: while one is
        in flight, the earlier ones whose step directory exists are committed already."""
        if not self._pending:
            return []
        if self.manager.is_saving_in_progress():
            done = [(s, r) for s, r in self._pending if (self.root / str(s)).is_dir()]
            self._pending = [p for p in self._pending if p not in done]
        else:
            self._call(self.manager.check_for_errors)
            done, self._pending = self._pending, []
            self._empty_trash()
        if self._primary:
            for step in {step for step, _ in done}:
                self._record(self.root / str(step))
        return [(step, reason, self.root / str(step)) for step, reason in done]

    @staticmethod
    def _record(step_dir: Path) -> None:
        """The sizes of a committed checkpoint's files, so a listing can tell a damaged one."""
        try:
            if not (step_dir / checkpoint_files.FILES).exists():
                checkpoint_files.record(step_dir)
        except OSError:  # rotated out meanwhile: nothing to record
            pass

    def wait(self) -> list[tuple[int, str, Path]]:
        """Block until every save in flight is committed; returns them as ``completed`` does."""
        self._call(self.manager.wait_until_finished)
        return self.completed()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def close(self) -> None:
        """Wait for saves in flight, then close; after a failed save (already raised) it only
        closes, as orbax would raise the same failure again."""
        try:
            if self._failed is None:
                self._call(self.manager.wait_until_finished)
        finally:
            try:
                self.manager.close()
            except Exception:
                if self._failed is None:
                    raise
            self._empty_trash()

    def _call(self, fn, *args, **kwargs):
        """An orbax call that may surface a failed background save: one that found the disk
        full becomes ``DiskFull`` (its unfinished temporary directory removed)."""
        if self._failed is not None:
            raise self._failed
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            if not is_disk_full(err):
                raise
            self._failed = self._disk_full()
            raise self._failed from None

    def _disk_full(self) -> DiskFull:
        """Remove the failed save's temporary directory; name the newest intact checkpoint and
        how much space a save needs."""
        unfinished = list(self.root.glob("*.orbax-checkpoint-tmp*"))
        steps = [int(p.name.split(".")[0]) for p in unfinished if p.name.split(".")[0].isdigit()]
        if self._primary:
            for tmp in unfinished:
                shutil.rmtree(tmp, ignore_errors=True)
        intact = rundir.latest_checkpoint(self.run_dir)
        need = intact.size_bytes() if intact is not None else self._state_bytes
        free = shutil.disk_usage(self.root).free
        short = max(1, math.ceil((need * 1.1 - free) / 1e6))
        where = f"newest intact checkpoint: {intact.path}" if intact else "no checkpoint saved yet"
        step = max(steps, default=self._writing)
        return DiskFull(
            f"disk full: checkpoint {step} could not be written to {self.root} "
            f"(No space left on device); {where}",
            f"free {short} MB in {self.root} (a checkpoint of this run takes {need / 1e6:.1f} MB; "
            f"rotation, train.keep_checkpoints={self._keep}, removes old ones only after the next "
            f"is written), then resume: `nanochat-tui run --resume {self.run_dir}`",
        )

    def _empty_trash(self) -> None:
        if self._primary:
            shutil.rmtree(self.root / rundir.TRASH, ignore_errors=True)


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


def _from_orbax(tb) -> bool:
    """Whether a traceback passes through orbax or tensorstore code."""
    while tb is not None:
        where = tb.tb_frame.f_code.co_filename
        if "orbax" in where or "tensorstore" in where:
            return True
        tb = tb.tb_next
    return False


class _OrbaxAsyncioNoise:
    """A filter on the ``asyncio`` logger: "Task exception was never retrieved" for a read task
    orbax abandoned when a damaged checkpoint failed to load goes to the app log at debug."""

    _nanochat_orbax = True

    def filter(self, record) -> bool:
        import logging

        exc = record.exc_info[1] if record.exc_info else None
        seen = 0
        while exc is not None and seen < 8:  # the error and its causes
            if _from_orbax(exc.__traceback__):
                logging.getLogger("nanochat_tui.checkpoint").debug(
                    "ignored after a failed checkpoint read: %s",
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                )
                return False
            exc = exc.__cause__ or exc.__context__
            seen += 1
        return True


def _route_orbax_unraisable() -> None:
    """Send the noise that orbax's abandoned coroutines leave behind when a damaged checkpoint
    fails to load or a save fails (the disk full: tensorstore's other writes finish on a closed
    event loop) — "Exception ignored in <coroutine ...>", "Event loop is closed", asyncio's "Task
    exception was never retrieved" when such a task is collected — to the app log at debug, not
    the terminal; the failure itself is reported once, as a clear error. Other unraisable
    exceptions and asyncio records go on unchanged. Installed once per process."""
    import logging
    import sys

    asyncio_log = logging.getLogger("asyncio")
    if not any(getattr(f, "_nanochat_orbax", False) for f in asyncio_log.filters):
        asyncio_log.addFilter(_OrbaxAsyncioNoise())
    previous = sys.unraisablehook
    if getattr(previous, "_nanochat_orbax", False):
        return
    log = logging.getLogger("nanochat_tui.checkpoint")

    def hook(unraisable) -> None:
        code = getattr(unraisable.object, "cr_code", None) or getattr(
            unraisable.object, "__code__", None
        )
        where = getattr(code, "co_filename", "") or ""
        text = str(unraisable.exc_value)
        if "orbax" in where or "tensorstore" in where or "Event loop is closed" in text:
            log.debug("ignored after a failed checkpoint read: %s", text.splitlines()[0][:200])
            return
        previous(unraisable)

    hook._nanochat_orbax = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _restore_state(step_dir: Path, abstract: dict[str, Any]) -> dict[str, Any]:
    _route_orbax_unraisable()
    with ocp.PyTreeCheckpointer() as ckptr:
        return ckptr.restore(
            Path(step_dir) / rundir.STATE_ITEM,
            args=ocp.args.PyTreeRestore(
                item=abstract,
                restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
                partial_restore=True,
            ),
        )


def _same_model(meta: dict[str, Any], model) -> bool:
    """Whether the meta's model settings agree with ``model``'s (then a failed load means damage)."""
    saved = meta.get("model")
    config = getattr(model, "config", None)
    if not isinstance(saved, dict) or config is None:
        return False
    current = config.model_dump(mode="json")
    return all(current.get(k) == v for k, v in saved.items() if k in current)


def newest_intact(step_dir: Path, model, optimizer=None) -> Path | None:
    """The newest checkpoint of the same run older than ``step_dir`` that loads (tried in full)."""
    step_dir = Path(step_dir)
    abstract = _abstract(model, optimizer)
    older = [
        c for c in rundir.list_checkpoints(step_dir.parent.parent) if c.step < _step_of(step_dir)
    ]
    for info in reversed(older):
        try:
            _restore_state(info.path, abstract)
        except Exception:
            continue
        return info.path
    return None


def _step_of(step_dir: Path) -> int:
    return int(step_dir.name) if step_dir.name.isdigit() else -1


def _abstract(model, optimizer) -> dict[str, Any]:
    abstract: dict[str, Any] = {"model": nnx.state(model, nnx.Param)}
    if optimizer is not None:
        abstract["optimizer"] = nnx.state(optimizer)
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract)


# tensorstore's read errors, as orbax passes them on (the cause of its own "Encountered error
# while reading array index … See full TensorStore details: <bound method pybind11_…>")
_TS_READ = re.compile(r'(?P<code>[A-Z_]+): Error reading "(?P<key>[^"]+)" in OCDBT database')
_TS_CODES = {
    "OUT_OF_RANGE": "its data file is shorter than when it was saved",
    "NOT_FOUND": "its data file is missing",
    "DATA_LOSS": "its data is corrupted",
    "FAILED_PRECONDITION": "its data is corrupted",
}
_REPR = re.compile(
    r"\s*(See full TensorStore details:.*|<[^<>]*(bound method|object at 0x)[^<>]*>?)"
)


def read_failure(step_dir: Path, err: BaseException) -> str:
    """Our own one line for why a checkpoint did not load: what is wrong with its files when the
    sizes recorded at save tell, else the array that could not be read and why, else the error's
    first line without the library's object reprs."""
    found = checkpoint_files.damage(step_dir)
    if found:
        return found
    cause: BaseException | None = err
    for _ in range(8):
        if cause is None:
            break
        match = _TS_READ.search(str(cause))
        if match:
            name = match["key"].split("/")[0].removesuffix(".value")
            why = _TS_CODES.get(match["code"], match["code"].lower().replace("_", " "))
            return f"array {name} cannot be read: {why}"
        cause = cause.__cause__ or cause.__context__
    text = _REPR.sub("", str(err).splitlines()[0] if str(err) else "").strip()
    return text[:200] or type(err).__name__


def damaged_message(step_dir: Path, err: BaseException, intact: Path | None) -> tuple[str, str]:
    """(message, remediation) for a checkpoint whose files do not load."""
    message = f"checkpoint {step_dir.name} is damaged ({step_dir}): {read_failure(step_dir, err)}"
    if intact is None:
        return message, (
            "no older intact checkpoint of this run: start a new run, or restore the step "
            "directory from a backup"
        )
    return message, (
        f"the newest intact checkpoint is step {intact.name} ({intact}): move or delete "
        f"{step_dir} and resume again to continue from it"
    )


def restore_into(step_dir: Path, model, optimizer=None) -> dict[str, Any]:
    """Load a step dir's weights (and optimizer state, when ``optimizer`` is given) in place.

    Returns the meta JSON. Raises IncompatibleCheckpoint when shapes don't match the model, or
    when the checkpoint is damaged (naming the newest intact one of the same run).
    """
    step_dir = Path(step_dir)
    meta = read_meta(step_dir)
    abstract = _abstract(model, optimizer)
    try:
        restored = _restore_state(step_dir, abstract)
    except Exception as err:
        if _same_model(meta, model):
            message, fix = damaged_message(step_dir, err, newest_intact(step_dir, model, optimizer))
            raise IncompatibleCheckpoint(message, fix) from None
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
