"""Where nanochat-tui keeps things on disk.

Everything hangs off platformdirs' per-user directories, except when ``NANOCHAT_TUI_HOME`` is set:
then config, data and runs all live under that one folder (tests and CI use this).
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "nanochat-tui"


def home_override() -> Path | None:
    value = os.environ.get("NANOCHAT_TUI_HOME")
    return Path(value).expanduser() if value else None


def _user_dir(sub: str, platform_dir: str) -> Path:
    """``$NANOCHAT_TUI_HOME/<sub>`` if set, else the platformdirs folder; created on demand."""
    override = home_override()
    if override is not None:
        path = override / sub
    else:
        import platformdirs

        path = Path(getattr(platformdirs, platform_dir)(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    """User config: user prefabs, keymap, UI state, fallback secrets file."""
    return _user_dir("config", "user_config_dir")


def data_dir() -> Path:
    """User data: runs, tokenizer/corpus caches, app logs."""
    return _user_dir("data", "user_data_dir")


def runs_dir() -> Path:
    """Default parent of run directories (``run.runs_dir`` in a config overrides it)."""
    env = os.environ.get("NANOCHAT_TUI_RUNS")
    path = Path(env).expanduser() if env else data_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Corpus and tokenized-shard caches (safe to delete)."""
    path = data_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def user_prefabs_dir() -> Path:
    path = config_dir() / "prefabs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_dir() -> Path:
    path = data_dir() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def bundled_prefabs_dir() -> Path:
    """The prefabs shipped with the package (repo checkout or installed wheel)."""
    here = Path(__file__).resolve().parent
    installed = here / "_prefabs"
    if installed.is_dir():
        return installed
    return here.parent.parent / "prefabs"
