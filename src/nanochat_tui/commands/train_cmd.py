"""``nanochat-tui run PREFAB``: train headless with a progress bar, resume a run, or --detach it.

Ctrl+C once saves a checkpoint and stops (resumable); twice aborts.

Several hosts: start the same command on each with ``--coordinator HOST:PORT --num-processes N
--process-id I`` and one ``--name`` (or set ``NANOCHAT_COORDINATOR``, ``NANOCHAT_NUM_PROCESSES``,
``NANOCHAT_PROCESS_ID``; under SkyPilot ``SKYPILOT_NODE_IPS``/``SKYPILOT_NUM_NODES``/
``SKYPILOT_NODE_RANK`` are read automatically, the coordinator being the first node on port
``COORDINATOR_PORT``). Process 0 writes events and the run's files and takes control commands for
the whole job; every process saves its shards. Each such command supervises its training process
(orchestrator/multihost.py) so a lost peer ends it with one line naming that process.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

COORDINATOR_PORT = 8476


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "prefab", nargs="?", default="tiny", help="prefab name or YAML path (default tiny)"
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key (dotted, repeatable), e.g. --set train.num_iterations=50",
    )  # fmt: skip
    parser.add_argument("--name", help="run name (default <prefab>-<YYYYmmdd-HHMMSS>)")
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue this run from its last checkpoint"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar; start/end lines only"
    )
    parser.add_argument(
        "--detach",
        action="store_true",
        help="run in the background (survives logout); control it later",
    )
    parser.add_argument(
        "--coordinator", metavar="HOST:PORT", help="several hosts: process 0's address (on all)"
    )
    parser.add_argument("--num-processes", type=int, metavar="N", help="several hosts: how many")
    parser.add_argument(
        "--process-id", type=int, metavar="I", help="several hosts: this one, 0..N-1"
    )


def cluster_from(args: argparse.Namespace, environ: dict[str, str]) -> tuple[str, int, int] | None:
    """``(coordinator, num_processes, process_id)`` for a multi-process run, from the flags, else
    ``NANOCHAT_*`` variables, else SkyPilot's; None for a single process."""
    from nanochat_tui.errors import UserError

    coordinator = args.coordinator or environ.get("NANOCHAT_COORDINATOR")
    count = (
        args.num_processes
        if args.num_processes is not None
        else environ.get("NANOCHAT_NUM_PROCESSES")
    )
    rank = args.process_id if args.process_id is not None else environ.get("NANOCHAT_PROCESS_ID")
    if coordinator is None and count is None and rank is None:
        nodes = environ.get("SKYPILOT_NODE_IPS", "").split()
        if len(nodes) > 1 and "SKYPILOT_NODE_RANK" in environ:
            coordinator = f"{nodes[0]}:{COORDINATOR_PORT}"
            count = environ.get("SKYPILOT_NUM_NODES", len(nodes))
            rank = environ["SKYPILOT_NODE_RANK"]
        else:
            return None
    fix = "pass all three: --coordinator HOST:PORT --num-processes N --process-id I"
    if coordinator is None or count is None or rank is None:
        raise UserError(
            "a multi-process run needs the coordinator, the process count and this process's id",
            fix,
        )
    host, _, port = str(coordinator).rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--coordinator {coordinator!r} is not HOST:PORT", fix)
    try:
        count, rank = int(count), int(rank)
    except ValueError:
        raise UserError(f"process count {count!r} / id {rank!r} are not integers", fix) from None
    if count < 1 or not 0 <= rank < count:
        raise UserError(
            f"--process-id {rank} is not in 0..{count - 1} (--num-processes {count})", fix
        )
    return str(coordinator), count, rank


def load_run_config(args: argparse.Namespace):
    """The config for this invocation: the prefab + --set, or the resumed run's own config + --set."""
    from nanochat_tui.config import apply_overrides, load_config

    if args.resume:
        from nanochat_tui.orchestrator.runner import load_run_config as load_from_run
        from nanochat_tui.orchestrator.runner import refuse_model_change

        run_dir = Path(args.resume).expanduser()
        if not run_dir.is_dir():
            from nanochat_tui.errors import UserError

            raise UserError(f"{run_dir} is not a directory", "pass a run directory to --resume")
        config = load_from_run(run_dir)
        if not args.overrides:
            return config, run_dir
        if config.pipeline:
            from nanochat_tui.errors import UserError

            raise UserError(
                f"{run_dir.name} is a pipeline; it resumes with its steps' own configs",
                "drop --set, or resume one step with changes: run --resume STEP_DIR --set ...",
            )
        changed = apply_overrides(config, args.overrides)
        refuse_model_change(config, changed, run_dir)
        return changed, run_dir
    config = load_config(args.prefab, args.overrides)
    return config, None


def execute_headless(
    config, run_dir: Path, *, resume: bool, control, callbacks: list, mode: str = "headless"
) -> Any:
    """Run training in this thread with telemetry (events.jsonl + W&B/OTel) wired: one place to change."""
    from nanochat_tui.orchestrator.runner import execute

    return execute(config, run_dir, resume=resume, control=control, callbacks=callbacks, mode=mode)


def run(args: argparse.Namespace) -> int:
    import os

    cluster = cluster_from(args, dict(os.environ))
    if cluster is not None and cluster[1] > 1:
        return run_process(args, *cluster)
    config, resume_dir = load_run_config(args)
    if args.detach:
        from nanochat_tui.orchestrator.runner import start_run

        handle = start_run(config, name=args.name, mode="detached", resume_dir=resume_dir)
        print(f"detached run {handle.name}: {handle.run_dir}")
        print(
            f"  watch:   nanochat-tui  (Runs pane, key 4)   or  tail -f {handle.run_dir}/events.jsonl"
        )
        print(f"  control: nanochat-tui control {handle.run_dir} checkpoint|stop|patch KEY=VALUE")
        return 0
    if config.pipeline:  # a new pipeline, or its parent directory resumed
        return run_pipeline_headless(config, args, resume_dir)

    from nanochat_tui.jax_engine.control import ControlInbox

    if resume_dir is not None:
        run_dir = resume_dir
    else:
        from nanochat_tui.orchestrator.runner import resolve_run_dir

        config, run_dir = resolve_run_dir(config, args.name)
    print(
        f"{'resuming' if resume_dir else 'run'} {config.run.name or run_dir.name}: {run_dir}",
        flush=True,
    )

    control = ControlInbox()
    previous = _install_sigint(control)
    display = _Display(quiet=args.quiet)
    try:
        with display:
            result = execute_headless(
                config, run_dir, resume=resume_dir is not None, control=control, callbacks=[display]
            )
    except BaseException:
        if resume_dir is None:
            discard_unstarted(run_dir)
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    _print_summary(result, run_dir)
    if result.status == "failed":
        print(f"error: {result.error or 'training failed'}", file=sys.stderr)
        return 1
    return 0


def run_pipeline_headless(config, args: argparse.Namespace, resume_dir: Path | None) -> int:
    """Run a pipeline in this process with a progress bar per step: the orchestrator's
    ``pipeline.run_steps`` (a new parent directory, or ``resume_dir``'s first unfinished step)."""
    from nanochat_tui.jax_engine.control import ControlInbox
    from nanochat_tui.orchestrator import pipeline

    if resume_dir is None:
        config, parent = pipeline.create(config, args.name)
    else:
        pipeline.check_resumable(resume_dir)
        parent = resume_dir
    stages = " → ".join(step.stage for step in config.pipeline)
    print(f"pipeline {config.run.name or parent.name}: {stages}  ({parent})", flush=True)
    control = ControlInbox()
    previous = _install_sigint(control)
    display = _Display(quiet=args.quiet)

    def on_step(step, run_dir: Path) -> None:
        display.label = f"{step.index}/{step.of} {step.stage}"
        print(f"[{step.index}/{step.of}] {step.stage}: {run_dir}", flush=True)

    try:
        with display:
            done = pipeline.run_steps(
                parent,
                resume=resume_dir is not None,
                control=control,
                callbacks=[display],
                on_step=on_step,
                on_step_end=lambda _step, run_dir, result: _print_summary(result, run_dir),
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    from nanochat_tui.orchestrator.summaries import summarize

    summary = summarize(parent)
    if summary.status != "finished":
        print(
            f"pipeline {summary.status} ({summary.detail}); continue it with "
            f"`nanochat-tui run --resume {parent}`",
            file=sys.stderr,
        )
        return 1 if summary.status == "failed" else 0
    last = done[-1][0] if done else parent
    print(f"pipeline finished: the last step is {last}")
    return 0


def run_process(args: argparse.Namespace, coordinator: str, count: int, rank: int) -> int:
    """One process of a multi-process run. As the user starts it: a supervisor of the training
    process (or, with --detach, a supervisor in the background). As that training process: process
    0 is a headless run (events, files, progress, the control socket); the others train their
    shards silently into the same run directory."""
    import os

    from nanochat_tui.errors import UserError
    from nanochat_tui.orchestrator import multihost
    from nanochat_tui.orchestrator.runner import run_dir_for

    if not (args.name or args.resume):
        raise UserError(
            "a multi-process run needs the same run name on every process",
            "pass --name NAME (or --resume RUN_DIR) to every process",
        )
    config, resume_dir = load_run_config(args)
    run_dir = resume_dir if resume_dir is not None else run_dir_for(config, args.name)
    if not multihost.is_supervised(os.environ):
        argv = _process_argv(args, coordinator, count, rank)
        if args.detach:
            return _detach_process(argv, run_dir, count, rank)
        return multihost.supervise(
            argv, rank=rank, count=count, coordinator=coordinator, run_dir=run_dir
        )
    from nanochat_tui.jax_engine.sharding import init_distributed, leave_job

    init_distributed(coordinator, count, rank, heartbeat_timeout_s=multihost.PEER_TIMEOUT_S)
    try:
        return _train_process(args, config, resume_dir, coordinator, count, rank)
    except Exception as err:
        if not isinstance(err, UserError):  # bad input is refused alike everywhere: one line
            print(
                f"process {rank} of {count}: training failed; waiting up to "
                f"{multihost.PEER_TIMEOUT_S} s for the other processes",
                file=sys.stderr,
                flush=True,
            )
        leave_job()  # all arrive: the error below is everyone's; one is lost: the runtime ends us
        raise


def _train_process(args, config, resume_dir, coordinator: str, count: int, rank: int) -> int:
    from nanochat_tui.jax_engine.sharding import barrier

    if rank == 0:
        from nanochat_tui.orchestrator.runner import resolve_run_dir

        if resume_dir is None:
            config, run_dir = resolve_run_dir(config, args.name)
        else:
            run_dir = resume_dir
        barrier("run-dir")
        print(f"process 0 of {count} ({coordinator}): {run_dir}", flush=True)
        return _train_here(args, config, run_dir, resume_dir is not None)
    from nanochat_tui.jax_engine.train import train
    from nanochat_tui.orchestrator.runner import run_dir_for

    barrier("run-dir")  # process 0 has made (and checked) the directory
    if resume_dir is None:
        run_dir = run_dir_for(config, args.name)
        config = config.model_copy(deep=True)
        config.run.name = args.name
    else:
        run_dir = resume_dir
    from nanochat_tui.orchestrator.plugin_hooks import engine_hooks

    hooks = engine_hooks(config)  # the same model and loss as process 0's (plugins)
    result = train(config, run_dir, lambda event: None, None, resume_dir is not None, hooks=hooks)
    print(f"process {rank} of {count}: {result.status} at step {result.step}", flush=True)
    return 1 if result.status == "failed" else 0


MULTI_PROCESS = "multi-process"  # run.json's mode for process 0 of several


def _train_here(args: argparse.Namespace, config, run_dir: Path, resume: bool) -> int:
    """Process 0 of several: the headless run, with the run directory already made, steerable
    through its control socket (``nanochat-tui control``); commands reach every process through
    ``share_commands`` at the same step. SIGTERM stops it at a checkpoint, like Ctrl+C."""
    from nanochat_tui.jax_engine.control import ControlInbox
    from nanochat_tui.orchestrator.detached import serve_control

    control = ControlInbox()
    previous = _install_sigint(control)
    previous_term = signal.signal(signal.SIGTERM, lambda _s, _f: control.stop())
    display = _Display(quiet=args.quiet)
    try:
        with serve_control(run_dir, control, config, MULTI_PROCESS), display:
            result = execute_headless(
                config,
                run_dir,
                resume=resume,
                control=control,
                callbacks=[display],
                mode=MULTI_PROCESS,
            )
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
    _print_summary(result, run_dir)
    return 1 if result.status == "failed" else 0


def _process_argv(args: argparse.Namespace, coordinator: str, count: int, rank: int) -> list[str]:
    """This process's command line again, for its supervised training process."""
    argv = [sys.executable, "-m", "nanochat_tui.cli"]
    if getattr(args, "debug", False):
        argv.append("--debug")
    argv += ["run", args.prefab]
    for item in args.overrides:
        argv += ["--set", item]
    if args.name:
        argv += ["--name", args.name]
    if args.resume:
        argv += ["--resume", str(args.resume)]
    if args.quiet or args.detach:
        argv.append("--quiet")
    return [
        *argv,
        *("--coordinator", coordinator, "--num-processes", str(count), "--process-id", str(rank)),
    ]


def _detach_process(argv: list[str], run_dir: Path, count: int, rank: int) -> int:
    """Start this process's supervisor in the background and say how to follow and steer it."""
    from nanochat_tui.orchestrator import multihost

    log_file = multihost.log_path(run_dir.name, rank)
    pid = multihost.detach(argv, log_file)
    print(f"detached process {rank} of {count} of run {run_dir.name} (pid {pid}): log {log_file}")
    if rank == 0:
        print(f"  watch:   nanochat-tui  (Runs pane, key 4)   or  tail -f {run_dir}/events.jsonl")
        print(f"  control: nanochat-tui control {run_dir} checkpoint|stop|patch KEY=VALUE")
    else:
        print("  process 0 takes the run's control commands (nanochat-tui control RUN_DIR ...)")
    return 0


def discard_unstarted(run_dir: Path) -> bool:
    """Remove a new run's directory when the run failed before it started (no ``run_start``
    event): its name is free again and `runs` shows no empty record. The error is printed."""
    import shutil

    from nanochat_tui import rundir

    try:
        started = b'"run_start"' in (run_dir / rundir.EVENTS).read_bytes()
    except OSError:
        started = False
    if started:
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def _install_sigint(control) -> Any:
    state = {"pressed": 0}

    def handler(signum, frame):
        state["pressed"] += 1
        if state["pressed"] == 1:
            print("\nstopping: saving a checkpoint (Ctrl+C again to abort)", file=sys.stderr)
            control.stop()
        else:
            raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (tests): leave signals alone
        return signal.getsignal(signal.SIGINT)


def _print_summary(result, run_dir: Path) -> None:
    print(f"{result.status} at step {result.step}: {run_dir}")
    if result.final_val_bpb is not None:
        line = f"  val bpb {result.final_val_bpb:.4f}"
        if result.unigram_bpb is not None:
            line += f"   (unigram baseline {result.unigram_bpb:.4f})"
        print(line)
    others = {k: v for k, v in (result.metrics or {}).items() if k != "val_bpb"}
    if others:
        print("  " + " · ".join(f"{name} {value:.4f}" for name, value in others.items()))
    if result.last_checkpoint:
        print(f"  last checkpoint: {result.last_checkpoint}")
    if result.status != "failed":
        print(f"  next: nanochat-tui chat {run_dir}   ·   nanochat-tui eval {run_dir}")


class _Display:
    """Rich progress bar (step, loss, tok/s, ETA) plus eval/sample/checkpoint lines, from events."""

    def __init__(self, quiet: bool, label: str = "train") -> None:
        self.quiet = quiet
        self.label = label
        self.progress = None
        self.task = None

    def __enter__(self) -> _Display:
        if self.quiet:
            return self
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=False)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[tps]} tok/s"),
            TextColumn("mfu {task.fields[mfu]}"),
            TextColumn("eta {task.fields[eta]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def _print(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)

    def __call__(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "error":
            return  # printed once at the end from the TrainResult / UserError
        if self.quiet:
            return
        if kind == "run_start":
            n, done = event.get("num_iterations", 0), event.get("resumed_from_step") or 0
            header = (
                f"{event.get('stage', 'pretrain')} · {event.get('num_params', 0) / 1e6:.2f}M "
                f"params · {n} steps × {event.get('tokens_per_step')} tokens · "
                f"{event.get('device')}"
            )
            if event.get("unigram_bpb") is not None:  # pretraining's baseline only
                header += f" · unigram bpb {event['unigram_bpb']:.3f}"
            if event.get("train_pairs") is not None:  # preference stages
                header += (
                    f" · {event['train_pairs']} train / {event.get('val_pairs')} held-out pairs"
                )
            self._print(header)
            self.total, self.every = n, max(1, n // 20)
            if self.progress is not None:
                self.task = self.progress.add_task(
                    self.label, total=n, completed=done, loss="-", tps="-", mfu="-", eta="-"
                )
        elif kind == "step" and self.task is not None:
            tps, mfu, eta = event.get("tokens_per_s"), event.get("mfu"), event.get("eta_s")
            if not self.console.is_terminal and event["step"] % self.every == 0:
                self._print(  # logs (nohup, CI) get a plain line instead of a live bar
                    f"step {event['step']}/{self.total} loss {event.get('loss', float('nan')):.4f} "
                    f"{tps or 0:,.0f} tok/s eta {_fmt_secs(eta)}"
                )
            self.progress.update(
                self.task,
                completed=event["step"],
                loss=f"{event.get('loss', float('nan')):.4f}",
                tps=f"{tps:,.0f}" if tps else "-",
                mfu=f"{100 * mfu:.1f}%" if mfu else "-",
                eta=_fmt_secs(eta),
            )
        elif kind == "eval":
            self._print(eval_line(event))
        elif kind == "sample":
            for s in event.get("samples", [])[:2]:
                self._print(f"  sample: {(s['prompt'] + s['completion'])[:100]!r}")
        elif kind == "checkpoint":
            self._print(
                f"step {event['step']}: checkpoint ({event.get('reason')}) {event.get('path')}"
            )
        elif kind == "patch":
            self._print(
                f"step {event.get('step')}: patch {event.get('changes')} → {event.get('message')}"
            )
        elif kind == "log":
            self._print(str(event.get("message")))
        elif kind == "run_end" and self.task is not None:
            self.progress.update(self.task, eta="0s")


_EVAL_FIELDS = (  # what an eval line shows, in this order, when the event has it
    ("val_bpb", "val bpb"),
    ("unigram_bpb", "unigram"),
    ("eval_rewards/accuracies", "rewards/accuracies"),
    ("eval_rewards/margins", "rewards/margins"),
    ("eval_loss", "eval loss"),
    ("val_loss", "val loss"),
)


def eval_line(event: dict) -> str:
    """``step N: val bpb … · val loss …`` (pretrain, SFT) or the preference stages' held-out
    ``rewards/accuracies · rewards/margins · eval loss``: whatever numbers the eval carries."""
    parts = [
        f"{label} {event[key]:.4f}"
        for key, label in _EVAL_FIELDS
        if isinstance(event.get(key), int | float)
    ]
    return f"step {event.get('step')}: " + (" · ".join(parts) or "evaluated")


def _fmt_secs(value: float | None) -> str:
    if value is None:
        return "-"
    value = int(value)
    return f"{value // 60}m{value % 60:02d}s" if value >= 60 else f"{value}s"
