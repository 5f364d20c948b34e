"""Steering the attached run from any pane: checkpoint now, patch, stop, resume, background.

The Runs and Live panes bind keys to these; ``run_commands(app)`` gives the palette the ones that
apply to ``app.state.run`` on every pane. Controls that block (a socket round trip, waiting for a
thread run to stop) run in a thread worker and report with a toast. Nothing here imports JAX.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nanochat_tui.config import ConfigError
from nanochat_tui.errors import UserError

Command = tuple[str, str, Callable[[], object]]
ENDED = ("stopped", "failed", "unknown")  # statuses a run can be resumed from


def parse_patch(text: str) -> dict[str, str]:
    """'optim.lr_multiplier=0.5 optim.grad_clip=2' -> {key: raw value}; ConfigError if malformed."""
    changes: dict[str, str] = {}
    for word in text.replace(",", " ").split():
        key, eq, value = word.partition("=")
        if not eq or not key or not value:
            raise ConfigError(f"'{word}' is not key=value (e.g. optim.lr_multiplier=0.5)")
        changes[key.strip()] = value.strip()
    if not changes:
        raise ConfigError("type key=value, e.g. optim.lr_multiplier=0.5")
    return changes


def attached(app: Any) -> Any:
    return getattr(getattr(app, "state", None), "run", None) if app.state_loaded else None


def need_run(app: Any) -> Any:
    run = attached(app)
    if run is None:
        app.notify("no run attached: pick one on Runs (4) and press enter", severity="warning")
    return run


def control(app: Any, what: str, call: Callable[[], object]) -> None:
    """Run a blocking control call off the UI thread and toast the outcome."""

    def work() -> None:
        try:
            call()
        except (UserError, ConfigError, OSError) as err:
            app.call_from_thread(
                app.notify, str(err), title=f"{what} failed", severity="error", timeout=8
            )
            return
        app.call_from_thread(app.notify, f"{what} sent", timeout=3)

    app.run_worker(work, thread=True, name="Steering the run", group="steer", exit_on_error=False)


def checkpoint(app: Any) -> None:
    run = need_run(app)
    if run is not None:
        control(app, "checkpoint", run.checkpoint_now)


def patch(app: Any) -> None:
    run = need_run(app)
    if run is None:
        return
    from nanochat_tui.config import PATCHABLE_FIELDS, validate_patch
    from nanochat_tui.config.loader import parse_value
    from nanochat_tui.tui.screens.prompt import PromptModal

    def check(text: str) -> str | None:
        try:
            changes = parse_patch(text)
            validate_patch(run.config, {k: parse_value(v) for k, v in changes.items()})
        except (ConfigError, UserError) as err:
            return str(err)
        return None

    def done(text: str | None) -> None:
        if text:
            changes = parse_patch(text)
            control(app, f"patch {text}", lambda: run.patch(changes))

    app.push_screen(
        PromptModal(
            f"Patch run {run.name}",
            help="key=value … (recorded as a 'patch' event). Patchable: "
            + ", ".join(PATCHABLE_FIELDS),
            placeholder="optim.lr_multiplier=0.5",
            validate=check,
        ),
        done,
    )


def stop(app: Any) -> None:
    run = need_run(app)
    if run is None:
        return
    from nanochat_tui.tui.screens.confirm import ConfirmScreen

    def answer(yes: bool | None) -> None:
        if yes:
            control(app, "stop", run.stop)

    app.push_screen(ConfirmScreen(f"Stop run {run.name}? (it saves a checkpoint first)"), answer)


def resume(app: Any, run_dir: Path | None = None, mode: str | None = None) -> None:
    """Resume ``run_dir`` (default: the attached run) from its latest checkpoint, then attach."""
    if run_dir is None:
        run = need_run(app)
        if run is None:
            return
        run_dir = Path(run.run_dir)
    from nanochat_tui.orchestrator.runner import read_record, resume_run, summarize

    status = summarize(run_dir).status
    if status not in ENDED:
        app.notify(f"{run_dir.name} is {status}; only a stopped or crashed run resumes", timeout=5)
        return
    recorded = read_record(run_dir).get("mode")
    mode = mode or (recorded if recorded in ("thread", "detached") else "thread")
    app.notify(f"resuming {run_dir.name} ({mode})…", timeout=3)

    def work() -> None:
        try:
            handle = resume_run(run_dir, mode=mode)
        except (UserError, ConfigError, OSError) as err:
            app.call_from_thread(
                app.notify, str(err), title="resume failed", severity="error", timeout=8
            )
            return
        app.call_from_thread(app.attach_handle, handle)

    app.run_worker(work, thread=True, name="Steering the run", group="steer", exit_on_error=False)


def run_commands(app: Any) -> list[Command]:
    """Palette commands for the attached run (only those that apply to its state)."""
    run = attached(app)
    if run is None:
        return []
    try:
        status = run.status()
    except Exception:
        status = "unknown"
    name = run.name
    if status == "running":
        return [
            (
                f"Run {name}: checkpoint now",
                "save a checkpoint after this step",
                lambda: checkpoint(app),
            ),
            (f"Run {name}: patch", "change a patchable field live (key=value)", lambda: patch(app)),
            (f"Run {name}: stop", "checkpoint and stop (asks first)", lambda: stop(app)),
        ]
    if status in ENDED:
        return [
            (
                f"Run {name}: resume",
                f"{status}: continue from its latest checkpoint",
                lambda: resume(app),
            )
        ]
    return []
