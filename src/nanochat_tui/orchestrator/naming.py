"""Run names and directories: where a run named NAME lives, refusing a taken or unusable name,
and a run's own config read back from its directory. No JAX; the TUI's new-run dialog uses it."""

from __future__ import annotations

import re
import time
from pathlib import Path

from nanochat_tui import paths, rundir
from nanochat_tui.config.loader import load_yaml, validate
from nanochat_tui.config.schema import Config
from nanochat_tui.errors import UserError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def default_run_name(config: Config) -> str:
    return f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_dir_for(config: Config, name: str) -> Path:
    """Where a run named ``name`` of ``config`` lives (``run.runs_dir`` or the user runs dir)."""
    parent = Path(config.run.runs_dir).expanduser() if config.run.runs_dir else paths.runs_dir()
    return parent / name


def name_problem(config: Config, name: str) -> str | None:
    """Why ``name`` cannot name a new run of ``config`` (bad characters, taken), or None."""
    if not NAME_RE.match(name):
        return "use letters, digits, '.', '_' and '-' (at most 100 characters)"
    run_dir = run_dir_for(config, name)
    if run_dir.exists() and any(run_dir.iterdir()):
        return f"a run named '{name}' exists ({run_dir}); pick another name or resume it"
    return None


def resolve_run_dir(config: Config, name: str | None = None) -> tuple[Config, Path]:
    """Pick the run name and directory; refuse an existing non-empty directory."""
    name = name or config.run.name or default_run_name(config)
    if not NAME_RE.match(name):
        raise UserError(
            f"run name {name!r} is not usable as a directory name",
            "use letters, digits, '.', '_' and '-' (at most 100 characters)",
        )
    run_dir = run_dir_for(config, name)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(
            f"run directory {run_dir} already exists and is not empty",
            "pick another run name, or resume it (`nanochat-tui run --resume DIR`)",
        )
    from nanochat_tui.projects import pin_soul

    config = pin_soul(config)  # the SOUL version an alignment run uses, fixed before it starts
    run_dir.mkdir(parents=True, exist_ok=True)
    config = config.model_copy(deep=True)
    config.run.name = name
    return config, run_dir


def load_run_config(run_dir: Path) -> Config:
    path = Path(run_dir) / rundir.CONFIG
    if not path.is_file():
        raise UserError(f"{run_dir} has no {rundir.CONFIG}", "is this a run directory?")
    return validate(load_yaml(path), str(path))


def refuse_model_change(saved: Config, changed: Config, run_dir: Path) -> None:
    """A resume continues the same model: any model.* change is refused before anything (the
    run's config.yaml included) is touched."""
    from nanochat_tui.config import diff

    keys = [key for key, _old, _new in diff(saved, changed) if key.startswith("model.")]
    if keys:
        raise UserError(
            f"cannot resume {Path(run_dir).name} with a different model ({', '.join(keys)}); "
            "nothing was changed",
            "resume without those changes; to try them, start a new run "
            "(nanochat-tui run PREFAB --set ...)",
        )
