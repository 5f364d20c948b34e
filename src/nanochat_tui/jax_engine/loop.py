"""The generic training loop: any stage (tasks/) through the same steps, schedule, cadence, control.

Start-up (each a ``phase`` event): tokenizer → the task's data → model + optimizer (+ resume) →
compile → first step → training. Then, per step:

    batch  = task batches (built and moved to the device in the prefetch thread)
    dispatch step n (asynchronous)
    read step n-1's metrics and emit its ``step`` event   ← one step late: the host never waits
                                                            for the step it just dispatched
    eval / sample / save / control at step n              ← these flush step n first
    note saves that orbax committed in the background     → ``checkpoint`` events

A resume is validated before anything is written or emitted: its events are held back until the
checkpoint has loaded, and a refusal raises ``ResumeRefused`` with the run untouched. Stopping at
step k and resuming reproduces the uninterrupted run bit for bit on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanochat_tui import rundir
from nanochat_tui.config.schema import Config
from nanochat_tui.errors import IncompatibleCheckpoint, ResumeRefused, UserError
from nanochat_tui.jax_engine.control import ControlInbox
from nanochat_tui.telemetry.events import make_event


@dataclass
class TrainResult:
    status: str  # "finished" | "stopped" | "failed"
    step: int
    final_val_bpb: float | None
    last_checkpoint: Path | None
    error: str | None = None  # the user-facing message when status is "failed"
    unigram_bpb: float | None = None  # baseline on the same val targets


@dataclass
class RunState:
    """What the loop knows about its run, kept apart so the loop body stays readable."""

    config: Config
    run_dir: Path
    on_event: Callable[[dict], None]
    step: int = 0
    last_checkpoint: Path | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {value, step}
    aux_time: float = 0.0  # seconds spent in evals, samples and saves
    started: float = field(default_factory=time.perf_counter)
    held: list[dict] | None = None  # events held back while a resume may still be refused

    @property
    def run_name(self) -> str:
        return self.config.run.name or self.run_dir.name

    @property
    def val_bpb(self) -> float | None:
        return self.metrics.get("val_bpb", {}).get("value")

    def emit(self, type_: str, **fields: Any) -> None:
        event = make_event(type_, **fields)
        if self.held is not None:
            self.held.append(event)
        else:
            self.on_event(event)

    def release(self) -> None:
        held, self.held = self.held or [], None
        for event in held:
            self.on_event(event)

    def log(self, message: str, level: str = "info") -> None:
        self.emit("log", level=level, message=message, step=self.step)

    def phase(self, name: str, detail: str = "") -> None:
        elapsed = round(time.perf_counter() - self.started, 3)
        self.emit("phase", phase=name, elapsed_s=elapsed, detail=detail, step=self.step)


class Halt(Exception):
    """Ends the loop with a failed result (non-finite loss, divergence): not a crash."""

    def __init__(self, result: TrainResult) -> None:
        super().__init__(result.error)
        self.result = result


def write_run_config(run_dir: Path, config: Config) -> None:
    from nanochat_tui.config.loader import to_yaml, write_atomic

    write_atomic(Path(run_dir) / rundir.CONFIG, to_yaml(config))


@dataclass
class _Pending:
    """A dispatched step whose outputs the host has not read yet."""

    step: int
    out: Any
    lr_scale: float
    epoch: float


@dataclass
class _Interval:
    """Host time between two consecutive step reads, split by where it went."""

    start: float
    aux0: float
    data: float = 0.0
    sync: float = 0.0


def run_loop(run: RunState, control: ControlInbox | None, resume: bool) -> TrainResult:
    """Train ``run.config`` into ``run.run_dir`` (see the module docstring)."""
    import jax
    from flax import nnx

    from nanochat_tui.config.estimates import flops_per_token, num_iterations, num_params
    from nanochat_tui.config.loader import ConfigError, validate_patch
    from nanochat_tui.jax_engine import checkpoint as ckpt
    from nanochat_tui.jax_engine.divergence import DivergenceWatch
    from nanochat_tui.jax_engine.flops import compute_dtype, device_summary
    from nanochat_tui.jax_engine.optim import lr_schedule
    from nanochat_tui.jax_engine.step import make_train_step

    config, run_dir = run.config, run.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        run.held = []
        try:
            task, model, optimizer, tokenizer, start_meta, start_fields = _setup(run, True)
        except UserError as err:
            if isinstance(err, ResumeRefused):
                raise
            raise ResumeRefused(err.message, err.remediation) from None
        run.release()
        _set_aside_damaged(run, int(start_meta["step"]))
    else:
        task, model, optimizer, tokenizer, start_meta, start_fields = _setup(run, False)
    write_run_config(run_dir, config)
    resumed_from = int(start_meta["step"]) if start_meta else None
    position = start_meta.get("data_position") if start_meta else None

    # Commit the state to the device the batches go to: the step's outputs are committed, and
    # uncommitted inputs on the first call would make the second call compile again.
    device = jax.devices()[0]
    for obj in (model, optimizer):
        nnx.update(obj, jax.device_put(nnx.state(obj), device))
    train_step = make_train_step(model, optimizer, task.loss)
    checkpointer = ckpt.Checkpointer(run_dir, keep=config.train.keep_checkpoints)
    batches = task.batches(position)
    n_iter = num_iterations(config)
    tokens_per_step = config.train.total_batch_size
    fpt = flops_per_token(config.model)
    device_info = device_summary()
    devices_used = len(jax.tree.leaves(nnx.state(model, nnx.Param))[0].devices())
    peak = device_info.get("peak_flops")
    peak_used = peak * devices_used if peak else None
    watch = DivergenceWatch(config.train.divergence_factor, config.train.divergence_steps)
    stage = task.stage

    def timed(fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                run.aux_time += time.perf_counter() - t0

        return wrapper

    @timed
    def eval_now() -> None:
        t0 = time.perf_counter()
        result = task.evaluate(model)
        for name, value in result.items():
            if isinstance(value, int | float):
                run.metrics[name] = {"value": float(value), "step": run.step}
        run.emit("eval", step=run.step, **result, seconds=round(time.perf_counter() - t0, 3))

    @timed
    def sample_now() -> None:
        samples = task.sample(model, run.step)
        if samples:
            run.emit("sample", step=run.step, samples=samples)

    @timed
    def save(reason: str) -> None:
        meta = ckpt.build_meta(
            config,
            step=run.step,
            run_name=run.run_name,
            stage=stage,
            reason=reason,
            tokenizer_hash=tokenizer.hash,
            data_position=batches.position,
            metrics=run.metrics,
        )
        checkpointer.save(run.step, model, optimizer, meta, reason)

    def committed(saves: list[tuple[int, str, Path]]) -> None:
        for step, reason, path in saves:
            run.last_checkpoint = path
            run.emit("checkpoint", step=step, path=str(path), reason=reason)

    run.emit(
        "run_start",
        run_name=run.run_name,
        run_dir=str(run_dir),
        stage=stage,
        config=config.model_dump(mode="json"),
        num_params=num_params(config.model),
        flops_per_token=fpt,
        num_iterations=n_iter,
        device=f"{device_info.get('platform')}:{device_info.get('device_kind')}",
        device_count=device_info.get("count", 1),
        devices_used=devices_used,
        peak_flops=peak,
        resumed_from_step=resumed_from,
        tokens_per_step=tokens_per_step,
        dtype=str(jax.numpy.dtype(compute_dtype(config))),
        grad_accum_steps=config.grad_accum_steps,
        tokenizer_hash=tokenizer.hash,
        **start_fields,
    )

    ema_step_time: float | None = None
    interval = _Interval(time.perf_counter(), run.aux_time)
    first_report = True

    def report(pending: _Pending | None) -> None:
        """Read a dispatched step's outputs (blocking on it) and emit its step event."""
        nonlocal ema_step_time, interval, first_report
        if pending is None:
            return
        t0 = time.perf_counter()
        out = pending.out
        loss, grad_norm = float(out.loss), float(out.grad_norm)
        aux = {k: float(v) for k, v in out.aux.items()}
        now = time.perf_counter()
        interval.sync += now - t0
        step = pending.step
        if not math.isfinite(loss):
            committed(checkpointer.wait())
            raise Halt(_nonfinite(run, step, loss, resumed_from))
        run.metrics["train_loss"] = {"value": loss, "step": step}
        step_time = now - interval.start - (run.aux_time - interval.aux0)
        host_time = max(0.0, step_time - interval.data - interval.sync)
        if step > (resumed_from or 0) + 1:  # the first step compiles: keep it out of the ETA
            ema_step_time = (
                step_time if ema_step_time is None else 0.9 * ema_step_time + 0.1 * step_time
            )
        tps = tokens_per_step / step_time if step_time > 0 else None
        if first_report:
            run.phase("training")
            first_report = False
        o = run.config.optim
        fields: dict[str, Any] = {}
        if aux:
            fields["aux"] = aux
        run.emit(
            "step",
            step=step,
            loss=loss,
            grad_norm=grad_norm if math.isfinite(grad_norm) else None,
            lr=o.matrix_lr * pending.lr_scale,
            lr_multiplier=o.lr_multiplier,
            tokens=step * tokens_per_step,
            tokens_per_s=tps,
            mfu=(fpt * tps / peak_used) if (tps and peak_used) else None,
            step_time=step_time,
            data_wait=interval.data,
            compute_time=interval.sync,
            host_time=host_time,
            eta_s=(ema_step_time * (n_iter - step)) if ema_step_time else None,
            epoch=pending.epoch,
            **fields,
        )
        interval = _Interval(time.perf_counter(), run.aux_time)
        action = run.config.train.on_divergence
        if action != "off" and watch.update(step, loss):
            message, fix = _divergence_message(run, watch, step, loss)
            if action == "stop":
                committed(checkpointer.wait())
                good = _good_checkpoint(run, watch.streak_start or step)
                run.emit(
                    "error", message=message, remediation=fix, kind="diverged",
                    last_checkpoint=_str(good), step=step,
                )  # fmt: skip
                run.emit("run_end", step=step, status="failed", final_val_bpb=run.val_bpb)
                error = f"{message}\n  → {fix}"
                raise Halt(TrainResult("failed", step, run.val_bpb, good, error))
            run.log(f"{message} (training goes on: train.on_divergence=warn) → {fix}", "warning")

    status = "finished"
    pending: _Pending | None = None
    try:
        while run.step < n_iter:
            wait0 = batches.data_wait
            x, y = batches.next()
            interval.data += batches.data_wait - wait0
            o = run.config.optim
            lr_scale = lr_schedule(run.step, n_iter, o) * o.lr_multiplier
            first = pending is None and first_report
            if first:
                run.phase("compile")
            t0 = time.perf_counter()
            out = train_step(model, optimizer, x, y, lr_scale, o.grad_clip)
            if first:
                run.phase("first_step", detail=f"compiled in {time.perf_counter() - t0:.1f}s")
            run.step += 1
            report(pending)
            pending = _Pending(run.step, out, lr_scale, batches.epoch_fraction)

            t = run.config.train
            due = [
                (every, fn)
                for every, fn in ((t.eval_every, eval_now), (t.sample_every, sample_now))
                if run.step < n_iter and every and run.step % every == 0
            ]
            save_due = run.step < n_iter and t.save_every and run.step % t.save_every == 0
            commands = control.drain() if control else []
            if due or save_due or commands:
                report(pending)  # evals, saves and patches see this step's loss first
                pending = None
            for _, fn in due:
                fn()
            if save_due:
                save("interval")
            stop = False
            for cmd in commands:
                if cmd["cmd"] == "checkpoint":
                    save("manual")
                elif cmd["cmd"] == "stop":
                    stop = True
                elif cmd["cmd"] == "patch":
                    changes = cmd.get("changes", {})
                    try:
                        new_config = validate_patch(run.config, changes)
                    except ConfigError as err:
                        run.emit(
                            "patch", step=run.step, changes=changes, ok=False, message=str(err)
                        )
                        continue
                    run.config = new_config
                    n_iter = num_iterations(new_config)
                    write_run_config(run_dir, new_config)
                    run.emit(
                        "patch", step=run.step, changes=changes, ok=True,
                        message=f"applied at step {run.step}", num_iterations=n_iter,
                    )  # fmt: skip
            committed(checkpointer.completed())
            if stop:
                save("stop")
                status = "stopped"
                break
        report(pending)
        pending = None
        if status == "finished":
            eval_now()
            sample_now()
            save("final")
        committed(checkpointer.wait())
    except Halt as halt:
        committed(checkpointer.wait())
        return halt.result
    finally:
        batches.close()
        checkpointer.close()
    run.emit(
        "run_end",
        step=run.step,
        status=status,
        final_val_bpb=run.val_bpb,
        unigram_bpb=run.metrics.get("unigram_bpb", {}).get("value"),
    )
    return TrainResult(
        status,
        run.step,
        run.val_bpb,
        run.last_checkpoint,
        unigram_bpb=run.metrics.get("unigram_bpb", {}).get("value"),
    )


def _setup(run: RunState, resume: bool):
    """Tokenizer, the task's data, model and optimizer (restored on resume): the start-up phases."""
    from flax import nnx

    from nanochat_tui.config.compat import check
    from nanochat_tui.jax_engine import checkpoint as ckpt
    from nanochat_tui.jax_engine.flops import compute_dtype
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.optim import build_optimizer
    from nanochat_tui.jax_engine.tasks import get_task
    from nanochat_tui.jax_engine.tokenizer import Tokenizer, get_tokenizer

    config, run_dir = run.config, run.run_dir
    run.phase("tokenizer")
    start = None
    if resume:
        start = _resume_point(run)
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
        tokenizer.save(run_dir / rundir.TOKENIZER)
    if tokenizer.vocab_size > config.model.vocab_size:
        raise IncompatibleCheckpoint(
            f"tokenizer has {tokenizer.vocab_size} ids but model.vocab_size is {config.model.vocab_size}",
            f"set model.vocab_size={tokenizer.vocab_size}",
        )

    run.phase("data")
    task = get_task(config.train.stage)(config, tokenizer, run.log)
    start_fields = task.prepare()
    if start_fields.get("unigram_bpb") is not None:
        run.metrics["unigram_bpb"] = {"value": float(start_fields["unigram_bpb"]), "step": 0}

    run.phase("model")
    model = GPT(config.model, rngs=nnx.Rngs(config.train.seed), dtype=compute_dtype(config))
    optimizer = nnx.Optimizer(model, build_optimizer(model, config), wrt=nnx.Param)
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
    meta = start.meta if start is not None else None
    return task, model, optimizer, tokenizer, meta, start_fields


def _init_tokenizer(config: Config):
    """With ``run.init_from`` (and no ``data.tokenizer``), the base run's own tokenizer: its ids
    are the ones the weights learned. None when that run dir has no tokenizer.json."""
    from nanochat_tui.jax_engine import checkpoint as ckpt
    from nanochat_tui.jax_engine.tokenizer import Tokenizer

    if not config.run.init_from or config.data.tokenizer:
        return None
    path = ckpt.resolve_step_dir(config.run.init_from).parent.parent / rundir.TOKENIZER
    return Tokenizer.load(path) if path.is_file() else None


def _resume_point(run: RunState) -> rundir.CheckpointInfo:
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


def _set_aside_damaged(run: RunState, resumed_from: int) -> None:
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


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def nonfinite_settings(config: Config) -> list[str]:
    """``section.field=value`` for every non-finite number in the config (inf, nan)."""
    found = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, float) and not math.isfinite(value):
            found.append(f"{prefix}={value}")

    walk("", config.model_dump())
    return found


def _nonfinite(run: RunState, step: int, loss: float, resumed_from: int | None) -> TrainResult:
    """The failed result (and its events) for a NaN/inf loss, naming the likely causes."""
    last = _good_checkpoint(run, step)
    where = f"last good checkpoint: {last}" if last else "no checkpoint was saved before it"
    msg = f"training diverged: loss became {loss} at step {step}; {where}"
    bad = nonfinite_settings(run.config)
    then = _restart_hint(run, last)
    if bad:
        fix = f"the config has non-finite values ({', '.join(bad)}): set finite ones, {then}"
    elif step == (resumed_from or 0) + 1:
        fix = (
            "the first step's loss comes before any update, so the learning rate is not the "
            "cause: check model.* settings (softcap, rope_base) and the data, " + then
        )
    else:
        fix = (
            "lower optim.lr_multiplier (or optim.matrix_lr / embedding_lr), keep optim.grad_clip "
            "> 0, " + then
        )
    run.emit(
        "error", message=msg, remediation=fix, kind="nan", last_checkpoint=_str(last), step=step
    )
    run.emit("run_end", step=step, status="failed", final_val_bpb=run.val_bpb)
    return TrainResult("failed", step, run.val_bpb, last, f"{msg}\n  → {fix}")


def _good_checkpoint(run: RunState, first_bad: int) -> Path | None:
    """The newest committed checkpoint whose weights predate the first bad loss: step k's loss is
    computed with the weights saved at step k-1, so those are suspect too."""
    before = [c for c in rundir.list_checkpoints(run.run_dir) if c.step < first_bad - 1]
    return before[-1].path if before else None


def _restart_hint(run: RunState, good: Path | None) -> str:
    """How to go on from ``good``: resume when it is the run's newest checkpoint, else its weights."""
    if good is None:
        return "then start again"
    latest = rundir.latest_checkpoint(run.run_dir)
    if latest is not None and latest.path == good:
        return f"then `nanochat-tui run --resume {run.run_dir}`"
    return f"then start from its weights: `--set run.init_from={good}`"


def _divergence_message(run: RunState, watch, step: int, loss: float) -> tuple[str, str]:
    good = _good_checkpoint(run, watch.streak_start or step)
    where = f"last good checkpoint: {good}" if good else "no checkpoint was saved before it"
    message = (
        f"training diverged: loss {loss:.4g} at step {step} has stayed above "
        f"{watch.factor:g}× its best ({watch.best:.4g}) for {watch.streak} steps since step "
        f"{watch.streak_start}; {where}"
    )
    fix = (
        "lower optim.lr_multiplier (or optim.matrix_lr / embedding_lr), keep optim.grad_clip > 0, "
        + _restart_hint(run, good)
    )
    fix += (
        "; train.divergence_factor / train.divergence_steps tune the check, "
        "train.on_divergence=warn|off relaxes it"
    )
    return message, fix
