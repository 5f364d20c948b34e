"""``execute``: run training in the current thread with telemetry wired (events.jsonl, W&B, OTel,
plugin sources, heartbeats) and run.json kept; every mode (thread, detached, headless, each step
of a pipeline, process 0 of several) trains through it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from nanochat_tui import rundir
from nanochat_tui.config.schema import Config
from nanochat_tui.jax_engine.control import ControlInbox
from nanochat_tui.orchestrator.records import this_process_record, update_record
from nanochat_tui.telemetry.events import Event, make_event

HEARTBEAT_S = float(os.environ.get("NANOCHAT_TUI_HEARTBEAT_S", "5"))


def build_hub(config: Config, run_dir: Path, callbacks: Iterable[Callable[[Event], None]] = ()):
    """The telemetry hub for one run: events.jsonl + W&B + OTel + plugin sources + heartbeats."""
    from nanochat_tui.telemetry.hub import TelemetryHub, load_sources

    sinks: list[Any] = []
    if config.telemetry.wandb.enabled:
        from nanochat_tui.telemetry.wandb_sink import WandbSink

        sinks.append(WandbSink(run_dir, config, config.run.name))
    from nanochat_tui.telemetry.otel_sink import OtelSink, otel_wanted

    if otel_wanted(config):
        sinks.append(OtelSink(config, config.run.name))
    return TelemetryHub(
        run_dir,
        sinks=sinks,
        callbacks=callbacks,
        sources=load_sources(run_dir, config),
        heartbeat_s=HEARTBEAT_S,
        device_metrics=True,
    )


def execute(
    config: Config,
    run_dir: Path,
    *,
    resume: bool = False,
    control: ControlInbox | None = None,
    callbacks: Iterable[Callable[[Event], None]] = (),
    mode: str = "thread",
    hub_ready: Callable[[Any], None] | None = None,
):
    """Run training in the current thread with telemetry wired; writes run.json. Returns TrainResult."""
    from nanochat_tui.errors import ResumeRefused
    from nanochat_tui.jax_engine.train import train

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    name = config.run.name or run_dir.name
    before = _RunFiles.snapshot(run_dir) if resume else None
    update_record(
        run_dir,
        name=name,
        run_dir=str(run_dir.resolve()),
        status="running",
        started=time.time(),
        ended=None,
        resumed=resume,
        project=config.align.project,
        soul_version=config.align.soul_version,
        **this_process_record(mode),
    )
    try:
        hub = build_hub(config, run_dir, callbacks)
    except BaseException:
        update_record(run_dir, status="failed", ended=time.time())
        raise
    if hub_ready is not None:
        hub_ready(hub)
    saw_end = False

    def on_event(event: Event) -> None:
        nonlocal saw_end
        if event.get("type") == "run_end":
            saw_end = True
        hub.emit(event)

    status = "failed"
    try:
        from nanochat_tui.orchestrator.plugin_hooks import engine_hooks

        result = train(config, run_dir, on_event, control, resume, hooks=engine_hooks(config))
        status = result.status
        return result
    except ResumeRefused:
        # Refused before any step: the run's record and events stay exactly as they were.
        hub.close()
        if before is not None:
            before.restore()
        status = None
        raise
    except BaseException as err:
        if not saw_end:
            from nanochat_tui.crash import known_secret_values, scrub

            remediation = getattr(err, "remediation", "")
            hub.emit(
                make_event(
                    "error",
                    message=scrub(f"{type(err).__name__}: {err}", known_secret_values()),
                    remediation=remediation,
                    kind="crash",
                    last_checkpoint=_latest_ckpt(run_dir),
                )
            )
            hub.emit(make_event("run_end", step=hub.last_step, status="failed", final_val_bpb=None))
        raise
    finally:
        if status is not None:
            update_record(run_dir, status=status, ended=time.time())
            hub.close()


class _RunFiles:
    """run.json and the length of events.jsonl before a resume, to put back if it is refused."""

    def __init__(self, run_dir: Path, record: bytes | None, events_size: int | None) -> None:
        self.run_dir, self.record, self.events_size = run_dir, record, events_size

    @classmethod
    def snapshot(cls, run_dir: Path) -> _RunFiles:
        rec, ev = run_dir / rundir.RUN_RECORD, run_dir / rundir.EVENTS
        return cls(
            run_dir,
            rec.read_bytes() if rec.is_file() else None,
            ev.stat().st_size if ev.is_file() else None,
        )

    def restore(self) -> None:
        rec, ev = self.run_dir / rundir.RUN_RECORD, self.run_dir / rundir.EVENTS
        if self.record is None:
            rec.unlink(missing_ok=True)
        else:
            rundir.write_atomic(rec, self.record)
        if self.events_size is None:
            ev.unlink(missing_ok=True)
        elif ev.is_file() and ev.stat().st_size > self.events_size:
            with open(ev, "r+b") as fh:
                fh.truncate(self.events_size)


def _latest_ckpt(run_dir: Path) -> str | None:
    ckpt = rundir.latest_checkpoint(run_dir)
    return str(ckpt.path) if ckpt else None
