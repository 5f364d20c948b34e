"""The generic training loop: any stage (tasks/) through the same steps, schedule, cadence, control.

Start-up (each a ``phase`` event): tokenizer → the task's data → model + optimizer (+ resume) →
compile → first step → training. Then, per step:

    batch  = task batches (built and moved to the device in the prefetch thread)
    dispatch step n (asynchronous)
    read step n-1's metrics and emit its ``step`` event   ← one step late: the host never waits
                                                            for the step it just dispatched
    eval / sample / save / control at step n              ← these flush step n first (and
                                                            ``train_step.sync()`` the model)
    note saves that orbax committed in the background     → ``checkpoint`` events

A resume is validated before anything is written or emitted: its events are held back until the
checkpoint has loaded, and a refusal raises ``ResumeRefused`` with the run untouched. Stopping at
step k and resuming reproduces the uninterrupted run bit for bit on CPU.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanochat_tui import allocator
from nanochat_tui.errors import ResumeRefused, UserError
from nanochat_tui.jax_engine.control import ControlInbox
from nanochat_tui.jax_engine.run_state import (
    Halt,
    RunState,
    TrainResult,
    write_run_config,
)

__all__ = ["RunState", "TrainResult", "run_loop", "write_run_config"]


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

    from nanochat_tui.config.estimates import flops_per_token, num_iterations, num_params
    from nanochat_tui.config.loader import ConfigError, validate_patch
    from nanochat_tui.jax_engine import checkpoint as ckpt
    from nanochat_tui.jax_engine.divergence import (
        DivergenceWatch,
        diverged_result,
        divergence_message,
        nonfinite_result,
    )
    from nanochat_tui.jax_engine.flops import compute_dtype, device_summary
    from nanochat_tui.jax_engine.optim import lr_schedule
    from nanochat_tui.jax_engine.sharding import (
        is_primary,
        placement,
        share_commands,
    )
    from nanochat_tui.jax_engine.startup import set_aside_damaged, setup
    from nanochat_tui.jax_engine.step import make_train_step

    config, run_dir = run.config, run.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        run.held = []
        try:
            task, model, optimizer, tokenizer, start_meta, start_fields = setup(run, True)
        except UserError as err:
            if isinstance(err, ResumeRefused):
                raise
            raise ResumeRefused(err.message, err.remediation) from None
        except BaseException:  # a crash, not a refusal: what was held back goes out with it
            run.release()
            raise
        run.release()
        if is_primary():
            set_aside_damaged(run, int(start_meta["step"]))
    else:
        task, model, optimizer, tokenizer, start_meta, start_fields = setup(run, False)
    primary = is_primary()  # several processes: only process 0 writes the run's files
    if primary:
        write_run_config(run_dir, config)
    resumed_from = int(start_meta["step"]) if start_meta else None
    position = start_meta.get("data_position") if start_meta else None

    # The state is on the mesh already (setup): the step keeps it there, batches come split over it.
    place = placement(config)
    train_step = make_train_step(model, optimizer, task.loss, run.hooks, place)
    n_iter = num_iterations(config)
    tokens_per_step = config.train.total_batch_size
    fpt = flops_per_token(config.model)
    device_info = device_summary()
    devices_used = place.size
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
        train_step.sync()
        result = task.evaluate(model)
        for name, value in result.items():
            if isinstance(value, int | float):
                run.metrics[name] = {"value": float(value), "step": run.step}
        run.emit("eval", step=run.step, **result, seconds=round(time.perf_counter() - t0, 3))

    @timed
    def sample_now() -> None:
        train_step.sync()
        samples = task.sample(model, run.step)
        if samples:
            run.emit("sample", step=run.step, samples=samples)

    @timed
    def save(reason: str) -> None:
        train_step.sync()
        meta = ckpt.build_meta(
            run.config,
            step=run.step,
            run_name=run.run_name,
            stage=stage,
            reason=reason,
            tokenizer_hash=tokenizer.hash,
            data_position=batches.position,
            metrics=run.metrics,
            plugin_shape=dict(run.hooks.shape) if run.hooks is not None else None,
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
        grad_accum_steps=place.layout.accum,
        mesh={"data": place.layout.data, "fsdp": place.layout.fsdp},
        device_batch=place.layout.device_batch,
        global_batch=place.layout.global_batch,
        processes=jax.process_count(),
        tokenizer_hash=tokenizer.hash,
        allocator=allocator.in_use(),
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
            raise Halt(nonfinite_result(run, step, loss, resumed_from, primary))
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
        if action == "off":
            return
        diverged = watch.update(step, loss)
        # from the first raw loss over the threshold, rotation keeps the newest checkpoint before
        # it (step k's loss comes from the weights saved at k-1)
        checkpointer.held_below = None if watch.first_bad is None else watch.first_bad - 1
        if not diverged:
            return
        if action == "stop":
            committed(checkpointer.wait())
            raise Halt(diverged_result(run, watch, step, loss, primary))
        message, fix = divergence_message(run, watch, step, loss)
        run.log(f"{message} (training goes on: train.on_divergence=warn) → {fix}", "warning")

    status = "finished"
    pending: _Pending | None = None
    checkpointer = ckpt.Checkpointer(run_dir, keep=config.train.keep_checkpoints)
    batches = task.batches(position)
    try:
        while run.step < n_iter:
            wait0 = batches.data_wait
            x, y = place.conform_batch(*batches.next())
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
            commands = share_commands(control.drain() if control else [])
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
                    if primary:
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
        metrics=run.headline_metrics(),
    )
    return TrainResult(
        status,
        run.step,
        run.val_bpb,
        run.last_checkpoint,
        unigram_bpb=run.metrics.get("unigram_bpb", {}).get("value"),
        metrics=run.headline_metrics(),
    )
