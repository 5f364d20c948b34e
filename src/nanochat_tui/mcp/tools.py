"""The MCP tools for configs and runs: plain functions returning JSON-ready dicts.

Bad input raises UserError or ConfigError with a readable message; ``server`` turns those into
MCP tool errors. Nothing here returns a secret: configs hold none (keys live in the keyring) and
run status is read from events.jsonl fields, not from the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nanochat_tui import checkpoint_files, paths, rundir
from nanochat_tui.errors import UserError

# Metric fields of a "step" event worth reporting (events.py); others (aux dicts) are left out.
STEP_FIELDS = ("loss", "lr_multiplier", "tokens", "tokens_per_s", "mfu", "step_time", "eta_s")
RECENT_STEPS = 10
# run_status reads the head of events.jsonl (run_start) and its tail, not a long run's whole log.
HEAD_BYTES = 64 * 1024
TAIL_BYTES = 2 * 1024 * 1024
DESTRUCTIVE = ("stop", "patch")


def list_prefabs() -> dict[str, Any]:
    """Bundled and user prefabs with origin, hardware, shadowing, and why a broken one fails."""
    from nanochat_tui.config.loader import scan_prefabs

    return {
        "bundled_dir": str(paths.bundled_prefabs_dir()),
        "user_dir": str(paths.user_prefabs_dir()),
        "prefabs": [
            {
                "name": e.name,
                "origin": e.origin,
                "path": str(e.path),
                "hardware": e.hardware,
                "shadowed": e.shadowed,
                "broken": e.error is not None,
                "error": e.error,
            }
            for e in scan_prefabs()
        ],
    }


def _config(prefab: str, overrides: list[str]):
    from nanochat_tui.config import load_config

    return load_config(prefab, list(overrides))


def show_config(prefab: str, overrides: list[str]) -> dict[str, Any]:
    """The resolved config as YAML, or a ConfigError naming what is wrong."""
    from nanochat_tui.config import to_yaml

    config = _config(prefab, overrides)
    return {"prefab": prefab, "overrides": list(overrides), "yaml": to_yaml(config)}


def estimate(prefab: str, overrides: list[str]) -> dict[str, Any]:
    """Parameters, FLOPs per token, tokens, and wall time / cost per accelerator."""
    from nanochat_tui.config import estimates

    config = _config(prefab, overrides)
    return {
        "params": estimates.num_params(config.model),
        "param_counts": estimates.param_counts(config.model),
        "flops_per_token": estimates.flops_per_token(config.model),
        "num_iterations": estimates.num_iterations(config),
        "total_tokens": estimates.total_tokens(config),
        "estimates": [
            {"accelerator": e.accelerator, "hours": e.hours, "cost_usd": e.cost, "mfu": e.mfu}
            for e in estimates.compatibility_matrix(config)
        ],
        "note": "closed-form estimates at an assumed MFU; real throughput varies",
    }


def start_run(prefab: str, overrides: list[str], name: str | None = None) -> dict[str, Any]:
    """Start a detached training run (its own process, survives this server); returns its dir.
    A pipeline prefab (tiny-chat, tiny-align) starts a pipeline run: its steps, in order, under
    the returned parent directory, whose run_status is the current step's."""
    from nanochat_tui.orchestrator import runner

    config = _config(prefab, overrides)
    handle = runner.start_run(config, name=name or None, mode="detached")
    steps = [step["name"] for step in runner.read_record(handle.run_dir).get("steps") or []]
    return {
        "run": handle.name,
        "run_dir": str(handle.run_dir),
        "pid": getattr(handle, "pid", None),
        "status": handle.status(),
        "steps": steps,  # a pipeline's step runs (each also a run); empty for one run
        "next": "poll run_status with this run's name or directory",
    }


def resolve_run(run: str) -> Path:
    """A run given by directory path or by name (under the user runs directory)."""
    path = Path(run).expanduser()
    if path.is_dir() and rundir.is_run_dir(path):
        return path
    candidate = paths.runs_dir() / run
    if "/" not in run and candidate.is_dir() and rundir.is_run_dir(candidate):
        return candidate
    names = [p.name for p in rundir.list_run_dirs(paths.runs_dir())][:20]
    raise UserError(
        f"no run named {run!r}",
        "pass a run name from list_runs or a run directory"
        + (f" (runs: {', '.join(names)})" if names else " (there are no runs yet)"),
    )


def _summary_dict(summary) -> dict[str, Any]:
    return {
        "run": summary.name,
        "run_dir": str(summary.run_dir),
        "status": summary.status,
        "detail": summary.detail,
        "reason": summary.reason,
        "step": summary.step,
        "mode": summary.mode,
        "started": summary.started,
        "last_event": summary.last_event,
    }


def list_runs() -> dict[str, Any]:
    """Every run under the user runs directory, newest first."""
    from nanochat_tui.orchestrator.summaries import list_runs as summaries

    return {
        "runs_dir": str(paths.runs_dir()),
        "runs": [_summary_dict(s) for s in summaries()],
    }


def run_status(run: str) -> dict[str, Any]:
    """Status, step, latest loss and val bpb, the last few step metrics, errors and checkpoints."""
    from nanochat_tui.orchestrator.summaries import summarize
    from nanochat_tui.telemetry.jsonl import read_head_and_tail

    run_dir = resolve_run(run)
    out = _summary_dict(summarize(run_dir))
    steps: list[dict[str, Any]] = []
    last: dict[str, Any] = {}
    for event in read_head_and_tail(run_dir / rundir.EVENTS, HEAD_BYTES, TAIL_BYTES):
        kind = event.get("type")
        if kind == "step":
            steps.append(
                {"step": event.get("step"), **{k: event[k] for k in STEP_FIELDS if k in event}}
            )
            del steps[:-RECENT_STEPS]
        elif kind == "eval":
            last["val_bpb"] = event.get("val_bpb")
            last["val_bpb_step"] = event.get("step")
        elif kind == "run_start":
            last.update(
                num_params=event.get("num_params"), num_iterations=event.get("num_iterations")
            )
        elif kind == "phase":
            last["phase"] = event.get("phase")
        elif kind == "error":
            last["error"] = {k: event.get(k) for k in ("kind", "message", "remediation")}
        elif kind == "run_end":
            if event.get("final_val_bpb") is not None:
                last["val_bpb"] = event["final_val_bpb"]
        elif kind == "patch":
            last["last_patch"] = {k: event.get(k) for k in ("step", "changes", "ok", "message")}
    out["loss"] = steps[-1].get("loss") if steps else None
    out.update(last)
    out.setdefault("val_bpb", None)
    out["recent_steps"] = steps
    latest = rundir.latest_checkpoint(run_dir)
    out["latest_checkpoint"] = str(latest.path) if latest else None
    return out


def list_checkpoints(run: str) -> dict[str, Any]:
    """A run's finished checkpoints (oldest first) and any damaged step directories."""
    run_dir = resolve_run(run)
    return {
        "run_dir": str(run_dir),
        "checkpoints": [
            {
                "step": c.step,
                "path": str(c.path),
                "stage": c.stage,
                "val_bpb": c.val_bpb,
                "pinned": c.pinned,
                "damaged": checkpoint_files.damage(c.path),  # None, or what is wrong
            }
            for c in rundir.list_checkpoints(run_dir)
        ],
        "damaged": [str(p) for p in rundir.damaged_checkpoints(run_dir)],
    }


def control_run(run: str, action: str, changes: list[str], confirm: bool) -> dict[str, Any]:
    """checkpoint (safe) / stop / patch (destructive: refused unless ``confirm`` is true)."""
    from nanochat_tui.config.loader import _split_override
    from nanochat_tui.orchestrator import runner

    if action not in ("checkpoint", *DESTRUCTIVE):
        raise UserError(f"unknown action {action!r}", "use checkpoint, stop or patch")
    if action != "patch" and changes:
        raise UserError(f"{action} takes no changes", "pass changes only with action=patch")
    if action == "patch" and not changes:
        raise UserError("patch needs changes", 'e.g. changes=["optim.lr_multiplier=0.5"]')
    run_dir = resolve_run(run)
    if action in DESTRUCTIVE and not confirm:
        what = (
            "stop the run (it saves a checkpoint, then ends)"
            if action == "stop"
            else (f"change {', '.join(changes)} in the live run")
        )
        raise UserError(
            f"refused: {action} would {what}; nothing was done",
            "ask the user, then call again with confirm=true",
        )
    handle = runner.attach(run_dir)
    if action == "checkpoint":
        handle.checkpoint_now()
        return {
            "run_dir": str(run_dir),
            "action": action,
            "sent": True,
            "note": "saved after the current step; see list_checkpoints",
        }
    if action == "stop":
        handle.stop()
        return {
            "run_dir": str(run_dir),
            "action": action,
            "sent": True,
            "note": "the run saves a checkpoint, then ends with status 'stopped'",
        }
    typed = handle.patch(dict(_split_override(c) for c in changes))
    return {
        "run_dir": str(run_dir),
        "action": action,
        "sent": True,
        "changes": typed,
        "note": "applied at the next step; run_status shows last_patch",
    }
