"""Entry point of a detached run: ``python -m nanochat_tui.orchestrator.detached RUN_DIR [--resume]``.

Started by ``runner.start_run(mode="detached")`` in a new session (no controlling terminal), so
closing the TUI or dropping SSH does not touch it. It opens the owner-only control socket first
(so the launcher can talk to it while JAX still imports), records pid/socket in run.json, then
trains via ``runner.execute`` (a pipeline's parent: its steps via ``pipeline.run_steps``, every
step steered through this one socket). SIGTERM/SIGINT ask for a graceful stop (checkpoint, then
run_end "stopped"); SIGHUP is ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nanochat_tui.config import ConfigError, validate_patch
from nanochat_tui.errors import UserError
from nanochat_tui.jax_engine.control import ControlInbox
from nanochat_tui.orchestrator import control, pipeline, runner


def make_handler(inbox: ControlInbox, config: Any, run_dir: Path):
    """Map socket requests onto the inbox; patches are validated here too (and again by the engine)."""

    def handle(req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        if cmd == "ping":
            return {"ok": True, "pid": _pid()}
        if cmd == "status":
            summary = runner.summarize(run_dir)
            return {"ok": True, "status": summary.status, "step": summary.step}
        if cmd == "patch":
            changes = req.get("changes")
            if not isinstance(changes, dict) or not changes:
                return {"ok": False, "error": "patch needs a non-empty 'changes' object"}
            try:
                validate_patch(config, changes)
            except ConfigError as err:
                return {"ok": False, "error": str(err)}
            inbox.patch(changes)
            return {"ok": True}
        if cmd in ("checkpoint", "stop"):
            inbox.put({"cmd": cmd})
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    return handle


@contextlib.contextmanager
def serve_control(run_dir: Path, inbox: ControlInbox, config: Any, mode: str) -> Iterator[Path]:
    """Open the run's owner-only control socket onto ``inbox`` and record it (with this process)
    in run.json, so ``attach``/``nanochat-tui control`` can steer the run; closed on exit. Used by
    detached runs and by process 0 of a multi-process run."""
    sock_path = control.socket_path_for(run_dir)
    server = control.ControlServer(sock_path, make_handler(inbox, config, run_dir)).start()
    try:
        runner.update_record(run_dir, socket=str(sock_path), **runner.this_process_record(mode))
        yield sock_path
    finally:
        server.close()


def _pid() -> int:
    import os

    return os.getpid()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nanochat_tui.orchestrator.detached")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    run_dir: Path = args.run_dir.resolve()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        config = runner.load_run_config(run_dir)
    except (UserError, ConfigError) as err:
        runner.update_record(run_dir, status="failed", ended=time.time(), error=str(err))
        print(f"error: {err}", file=sys.stderr)
        return 2
    inbox = ControlInbox()

    def graceful_stop(signum: int, _frame: Any) -> None:
        inbox.stop()

    signal.signal(signal.SIGTERM, graceful_stop)
    signal.signal(signal.SIGINT, graceful_stop)
    with serve_control(run_dir, inbox, config, "detached"):
        try:
            if config.pipeline:  # the parent of a pipeline: its steps, one after another
                done = pipeline.run_steps(
                    run_dir, resume=args.resume, control=inbox, mode="detached"
                )
                status = runner.summarize(run_dir).status
                print(f"pipeline ended: {status} after {len(done)} step(s) run", flush=True)
                return 0 if status != "failed" else 1
            result = runner.execute(
                config, run_dir, resume=args.resume, control=inbox, mode="detached"
            )
            print(f"run ended: {result.status} at step {result.step}", flush=True)
            return 0 if result.status != "failed" else 1
        except Exception as err:
            from nanochat_tui.crash import write_crash_dump

            dump = write_crash_dump(err, run_dir / "crash")
            print(
                f"run failed: {type(err).__name__}; crash dump (no secrets): {dump}",
                file=sys.stderr,
            )
            return 1


if __name__ == "__main__":
    from nanochat_tui.exiting import leave

    leave(main())
