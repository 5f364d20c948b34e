"""The training loop: tokenizer → token splits → model + optimizer → steps, evals, samples, checkpoints.

``train(config, run_dir, on_event, control, resume)`` talks to the world only through ``on_event``
(plain dict events, telemetry/events.py) and the control inbox, which it drains once per step.
Stopping at step k and resuming reproduces the uninterrupted run bit for bit on CPU: the optimizer
state, step and data position all live in the checkpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanochat_tui import rundir
from nanochat_tui.config.schema import Config
from nanochat_tui.errors import IncompatibleCheckpoint, UserError
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


def _compute_dtype(config: Config):
    try:
        from nanochat_tui.jax_engine.flops import compute_dtype

        return compute_dtype(config)
    except ImportError:
        import jax
        import jax.numpy as jnp

        if config.train.dtype != "auto":
            return jnp.dtype(config.train.dtype)
        return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16


def _device_info() -> dict[str, Any]:
    import jax

    try:
        from nanochat_tui.jax_engine.flops import device_summary

        return dict(device_summary())
    except ImportError:
        dev = jax.devices()[0]
        return {
            "platform": dev.platform,
            "device_kind": dev.device_kind,
            "count": jax.device_count(),
            "peak_flops": None,
        }


def write_run_config(run_dir: Path, config: Config) -> None:
    from nanochat_tui.config.loader import to_yaml, write_atomic

    write_atomic(Path(run_dir) / rundir.CONFIG, to_yaml(config))


def _is_oom(err: BaseException) -> bool:
    return "RESOURCE_EXHAUSTED" in str(err) or "Out of memory" in str(err)


class _Run:
    """State of one training run (kept in an object so the loop body stays readable)."""

    def __init__(self, config: Config, run_dir: Path, on_event: Callable[[dict], None]) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.on_event = on_event
        self.run_name = config.run.name or self.run_dir.name
        self.step = 0
        self.last_checkpoint: Path | None = None
        self.val_bpb: float | None = None
        self.last_loss: float | None = None
        self.aux_time = 0.0  # seconds spent in evals, samples and checkpoints

    def emit(self, type_: str, **fields: Any) -> None:
        self.on_event(make_event(type_, **fields))

    def log(self, message: str, level: str = "info") -> None:
        self.emit("log", level=level, message=message, step=self.step)


def train(
    config: Config,
    run_dir: Path,
    on_event: Callable[[dict], None],
    control: ControlInbox | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train ``config`` into ``run_dir``; see the module docstring."""
    run = _Run(config, run_dir, on_event)
    try:
        return _train(run, control, resume)
    except UserError as err:
        run.emit(
            "error",
            message=err.message,
            remediation=err.remediation,
            last_checkpoint=_str(run.last_checkpoint),
            kind="crash",
            step=run.step,
        )
        run.emit("run_end", step=run.step, status="failed", final_val_bpb=run.val_bpb)
        raise
    except Exception as err:
        if _is_oom(err):
            msg = f"out of device memory at step {run.step} ({type(err).__name__})"
            fix = (
                f"lower train.device_batch_size (now {config.train.device_batch_size}) and keep "
                f"train.total_batch_size; gradient accumulation makes up the difference"
            )
            run.emit(
                "error", message=msg, remediation=fix, kind="oom",
                last_checkpoint=_str(run.last_checkpoint), step=run.step,
            )  # fmt: skip
            run.emit("run_end", step=run.step, status="failed", final_val_bpb=run.val_bpb)
            return TrainResult(
                "failed", run.step, run.val_bpb, run.last_checkpoint, f"{msg}\n  → {fix}"
            )
        run.emit(
            "error",
            message=f"{type(err).__name__}: {err}",
            remediation="see the crash dump; rerun with --debug for the full traceback",
            last_checkpoint=_str(run.last_checkpoint),
            kind="crash",
            step=run.step,
        )
        run.emit("run_end", step=run.step, status="failed", final_val_bpb=run.val_bpb)
        raise


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _train(run: _Run, control: ControlInbox | None, resume: bool) -> TrainResult:
    import numpy as np
    from flax import nnx

    from nanochat_tui.config.compat import check
    from nanochat_tui.config.estimates import flops_per_token, num_iterations, num_params
    from nanochat_tui.config.loader import ConfigError, validate_patch
    from nanochat_tui.jax_engine import checkpoint as ckpt
    from nanochat_tui.jax_engine.data import BatchLoader, build_splits
    from nanochat_tui.jax_engine.evaluate import (
        evaluate_bpb,
        sample_continuations,
        unigram_baseline,
    )
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.optim import build_optimizer, lr_schedule
    from nanochat_tui.jax_engine.step import make_train_step
    from nanochat_tui.jax_engine.tokenizer import Tokenizer, get_tokenizer

    config = run.config
    run_dir = run.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------- tokenizer, resume point
    resume_dir: Path | None = None
    resume_meta: dict[str, Any] | None = None
    if resume:
        latest = rundir.latest_checkpoint(run_dir)
        if latest is None:
            raise UserError(
                f"nothing to resume in {run_dir}: it has no checkpoints",
                "start a new run instead (drop --resume)",
            )
        resume_dir, resume_meta = latest.path, latest.meta
        tok_path = run_dir / rundir.TOKENIZER
        if not tok_path.is_file():
            raise IncompatibleCheckpoint(
                f"{tok_path} is missing", "resume needs the run's own tokenizer.json"
            )
        tokenizer = Tokenizer.load(tok_path)
        _check_tokenizer(resume_meta, tokenizer, resume_dir)
        problems = [
            p for p in check(config, resume_meta, suggest_prefab=False) if p.field != "tokenizer"
        ]
        if problems:
            raise IncompatibleCheckpoint(
                f"cannot resume {resume_dir}: " + "; ".join(p.reason for p in problems),
                "resume with the run's own config.yaml; "
                + "; ".join(p.remediation for p in problems),
            )
    else:
        tokenizer = get_tokenizer(config, log=run.log)
        tokenizer.save(run_dir / rundir.TOKENIZER)
    if tokenizer.vocab_size > config.model.vocab_size:
        raise IncompatibleCheckpoint(
            f"tokenizer has {tokenizer.vocab_size} ids but model.vocab_size is {config.model.vocab_size}",
            f"set model.vocab_size={tokenizer.vocab_size}",
        )
    write_run_config(run_dir, config)

    splits = build_splits(config, tokenizer, log=run.log)
    token_bytes = tokenizer.token_bytes()
    if len(token_bytes) < config.model.vocab_size:
        token_bytes = np.pad(token_bytes, (0, config.model.vocab_size - len(token_bytes)))

    # ---------------------------------------------------------- model + optimizer
    dtype = _compute_dtype(config)
    model = GPT(config.model, rngs=nnx.Rngs(config.train.seed), dtype=dtype)
    optimizer = nnx.Optimizer(model, build_optimizer(model, config), wrt=nnx.Param)
    position: dict | None = None
    resumed_from = None
    if resume_dir is not None and resume_meta is not None:
        ckpt.restore_into(resume_dir, model, optimizer)
        run.step = resumed_from = int(resume_meta["step"])
        position = resume_meta.get("data_position")
        run.val_bpb = resume_meta.get("val_bpb")
        run.last_checkpoint = resume_dir
    elif config.run.init_from:
        init_dir = ckpt.resolve_step_dir(config.run.init_from)
        init_meta = ckpt.read_meta(init_dir)
        _check_tokenizer(init_meta, tokenizer, init_dir)
        ckpt.restore_into(init_dir, model)
        run.log(f"initialised weights from {init_dir}")
    checkpointer = ckpt.Checkpointer(run_dir, keep=config.train.keep_checkpoints)

    seq, bsz, accum = (
        config.model.sequence_len,
        config.train.device_batch_size,
        config.grad_accum_steps,
    )
    loader = BatchLoader(splits.train, seq, bsz * accum, config.train.seed, position=position)
    train_step = make_train_step(model, optimizer)
    n_iter = num_iterations(config)
    tokens_per_step = config.train.total_batch_size
    fpt = flops_per_token(config.model)
    device = _device_info()
    peak = device.get("peak_flops")
    total_peak = peak * device.get("count", 1) if peak else None

    def timed(fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                run.aux_time += time.perf_counter() - t0

        return wrapper

    @timed
    def eval_now() -> float:
        t0 = time.perf_counter()
        res = evaluate_bpb(
            model,
            splits.val,
            token_bytes,
            seq_len=seq,
            batch_size=bsz,
            max_tokens=config.train.eval_tokens,
        )
        run.val_bpb = res["val_bpb"]
        run.emit(
            "eval", step=run.step, val_bpb=res["val_bpb"], val_loss=res["val_loss"],
            unigram_bpb=unigram, seconds=round(time.perf_counter() - t0, 3),
        )  # fmt: skip
        return res["val_bpb"]

    @timed
    def sample_now() -> None:
        samples = sample_continuations(
            model, tokenizer, max_new_tokens=min(48, seq // 2), seed=run.step
        )
        run.emit("sample", step=run.step, samples=samples)

    @timed
    def save(reason: str) -> Path:
        meta = ckpt.build_meta(
            config,
            step=run.step,
            run_name=run.run_name,
            tokenizer_hash=tokenizer.hash,
            data_position=loader.position,
            val_bpb=run.val_bpb,
            train_loss=run.last_loss,
        )
        path = checkpointer.save(run.step, model, optimizer, meta)
        checkpointer.wait()
        run.last_checkpoint = path
        run.emit("checkpoint", step=run.step, path=str(path), reason=reason)
        return path

    unigram = unigram_baseline(
        splits.train, splits.val, token_bytes, seq_len=seq, max_tokens=config.train.eval_tokens
    )
    run.emit(
        "run_start",
        run_name=run.run_name,
        run_dir=str(run_dir),
        config=config.model_dump(mode="json"),
        num_params=num_params(config.model),
        flops_per_token=fpt,
        num_iterations=n_iter,
        device=f"{device.get('platform')}:{device.get('device_kind')}",
        device_count=device.get("count", 1),
        peak_flops=peak,
        resumed_from_step=resumed_from,
        tokens_per_step=tokens_per_step,
        dtype=str(np.dtype(dtype)),
        grad_accum_steps=accum,
        train_tokens=len(splits.train),
        val_tokens=len(splits.val),
        tokenizer_hash=tokenizer.hash,
        unigram_bpb=unigram,
    )

    status = "finished"
    ema_step_time: float | None = None
    host_time = 0.0
    try:
        while run.step < n_iter:
            t_start = time.perf_counter()
            wait0 = loader.data_wait
            x, y = loader.next()
            data_wait = loader.data_wait - wait0
            x = x.reshape(accum, bsz, seq)
            y = y.reshape(accum, bsz, seq)
            o = config.optim
            lr_scale = lr_schedule(run.step, n_iter, o) * o.lr_multiplier
            t_compute = time.perf_counter()
            out = train_step(model, optimizer, x, y, lr_scale, o.grad_clip)
            loss, grad_norm = float(out.loss), float(out.grad_norm)
            compute_time = time.perf_counter() - t_compute
            run.step += 1
            if not math.isfinite(loss):
                return _diverged(run, loss, checkpointer)
            run.last_loss = loss
            step_time = data_wait + compute_time + host_time
            if (
                run.step > (resumed_from or 0) + 1
            ):  # the first step compiles: keep it out of the ETA
                ema_step_time = (
                    step_time if ema_step_time is None else 0.9 * ema_step_time + 0.1 * step_time
                )
            tps = tokens_per_step / step_time if step_time > 0 else None
            run.emit(
                "step",
                step=run.step,
                loss=loss,
                grad_norm=grad_norm if math.isfinite(grad_norm) else None,
                lr=o.matrix_lr * lr_scale,
                lr_multiplier=o.lr_multiplier,
                tokens=run.step * tokens_per_step,
                tokens_per_s=tps,
                mfu=(fpt * tps / total_peak) if (tps and total_peak) else None,
                step_time=step_time,
                data_wait=data_wait,
                compute_time=compute_time,
                host_time=host_time,
                eta_s=(ema_step_time * (n_iter - run.step)) if ema_step_time else None,
                epoch=loader.epoch_fraction,
            )
            t_host = time.perf_counter()
            aux0 = run.aux_time
            t = config.train
            if run.step < n_iter:
                if t.eval_every and run.step % t.eval_every == 0:
                    eval_now()
                if t.sample_every and run.step % t.sample_every == 0:
                    sample_now()
                if t.save_every and run.step % t.save_every == 0:
                    save("interval")
            stop = False
            for cmd in control.drain() if control else []:
                if cmd["cmd"] == "checkpoint":
                    save("manual")
                elif cmd["cmd"] == "stop":
                    stop = True
                elif cmd["cmd"] == "patch":
                    changes = cmd.get("changes", {})
                    try:
                        config = validate_patch(config, changes)
                    except ConfigError as err:
                        run.emit(
                            "patch", step=run.step, changes=changes, ok=False, message=str(err)
                        )
                        continue
                    run.config = config
                    n_iter = num_iterations(config)
                    write_run_config(run_dir, config)
                    run.emit(
                        "patch", step=run.step, changes=changes, ok=True,
                        message=f"applied at step {run.step}", num_iterations=n_iter,
                    )  # fmt: skip
            if stop:
                save("stop")
                status = "stopped"
                break
            # eval/sample/checkpoint time has its own events; host_time is the loop's own overhead
            host_time = time.perf_counter() - t_host - (run.aux_time - aux0)
            del t_start

        if status == "finished":
            eval_now()
            sample_now()
            save("final")
    finally:
        loader.close()
        checkpointer.close()
    run.emit(
        "run_end", step=run.step, status=status, final_val_bpb=run.val_bpb, unigram_bpb=unigram
    )
    return TrainResult(status, run.step, run.val_bpb, run.last_checkpoint, unigram_bpb=unigram)


def _check_tokenizer(meta: dict[str, Any], tokenizer, step_dir: Path) -> None:
    want = meta.get("tokenizer_hash")
    if want and want != tokenizer.hash:
        raise IncompatibleCheckpoint(
            f"checkpoint {step_dir} was trained with tokenizer {want}, but this run's tokenizer is "
            f"{tokenizer.hash}",
            "use the checkpoint's own run directory (its tokenizer.json), or set data.tokenizer to "
            "that tokenizer.json",
        )


def _diverged(run: _Run, loss: float, checkpointer) -> TrainResult:
    last = run.last_checkpoint
    where = f"last good checkpoint: {last}" if last else "no checkpoint was saved before it"
    msg = f"training diverged: loss became {loss} at step {run.step}; {where}"
    fix = (
        "lower optim.lr_multiplier (or optim.matrix_lr / embedding_lr), keep optim.grad_clip > 0, "
        + (f"then `nanochat-tui run --resume {run.run_dir}`" if last else "then start again")
    )
    run.emit(
        "error", message=msg, remediation=fix, kind="nan", last_checkpoint=_str(last), step=run.step
    )
    run.emit("run_end", step=run.step, status="failed", final_val_bpb=run.val_bpb)
    return TrainResult("failed", run.step, run.val_bpb, last, f"{msg}\n  → {fix}")
