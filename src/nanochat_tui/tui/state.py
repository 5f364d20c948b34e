"""Shared UI state (``app.state``) and its persistence in ``config_dir()/state.json``.

Saved on exit, restored on start: last pane, prefab + overrides, loaded checkpoint path, and the
attached run's directory (the app re-attaches to it, or offers it if it has ended).
Importing this module does not import the config layer (pydantic schema building costs ~0.15 s);
``restore()`` and the AppState methods import it when called.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nanochat_tui import paths
from nanochat_tui.rundir import CheckpointInfo, read_meta

if TYPE_CHECKING:  # the config layer (pydantic, yaml) is imported when a state is built, not
    from nanochat_tui.config import Config  # when the app module is: it stays off the first frame

STATE_FILE = "state.json"
log = logging.getLogger("nanochat_tui.tui.state")


@dataclass
class AppState:
    """What panes share. Change it, then post the matching message from tui/messages.py."""

    prefab_name: str
    base_config: Config
    config: Config
    checkpoint: CheckpointInfo | None = None
    run: Any = None  # orchestrator.runner.RunHandle
    device: dict[str, Any] | None = None
    last_pane: str = "config"
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted key -> value (user edits)
    saved_run: Path | None = None  # the run attached when the app last closed (state.json)

    @classmethod
    def from_prefab(cls, name: str, overrides: list[str] | None = None) -> AppState:
        from nanochat_tui.config import apply_overrides, diff, load_prefab

        base = load_prefab(name)
        config = apply_overrides(base, overrides) if overrides else base
        state = cls(prefab_name=name, base_config=base, config=config)
        state.overrides = {k: new for k, _old, new in diff(base, config)}
        return state

    def set_prefab(self, name: str) -> None:
        """Switch prefab, dropping overrides."""
        from nanochat_tui.config import load_prefab

        self.base_config = load_prefab(name)
        self.prefab_name = name
        self.config = self.base_config
        self.overrides = {}

    def set_override(self, dotted: str, value: Any) -> Config:
        """Apply one edit on top of the others; raises ConfigError (state unchanged) if invalid."""
        from nanochat_tui.config import apply_overrides, diff

        candidate = dict(self.overrides)
        candidate[dotted] = value
        config = apply_overrides(self.base_config, candidate)
        self.config = config
        self.overrides = {k: new for k, _old, new in diff(self.base_config, config)}
        return config

    def clear_overrides(self) -> None:
        self.config = self.base_config
        self.overrides = {}

    # ------------------------------------------------------------ persistence

    def to_json(self) -> dict[str, Any]:
        return {
            "last_pane": self.last_pane,
            "prefab": self.prefab_name,
            "overrides": self.overrides,
            "checkpoint": str(self.checkpoint.path) if self.checkpoint else None,
            "run": str(Path(self.run.run_dir).resolve()) if self.run is not None else None,
        }

    def save(self) -> Path:
        from nanochat_tui.rundir import write_atomic

        path = state_path()
        write_atomic(path, json.dumps(self.to_json(), indent=1, default=str))
        return path


def state_path() -> Path:
    return paths.config_dir() / STATE_FILE


def read_saved() -> dict[str, Any]:
    try:
        data = json.loads(state_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def startup_prefab(prefab: str | None = None, saved: dict[str, Any] | None = None) -> str:
    """The prefab ``restore()`` starts from (cheap: reads state.json only)."""
    saved = read_saved() if saved is None else saved
    name = prefab or saved.get("prefab") or "tiny"
    return name if isinstance(name, str) else "tiny"


def restore(
    prefab: str | None = None, overrides: list[str] | None = None
) -> tuple[AppState, list[str]]:
    """Build the start-up state: saved state.json unless ``prefab`` is given; returns warnings.

    Anything stale in state.json (a deleted prefab, an override that no longer validates, a missing
    checkpoint) is dropped with a warning instead of failing the start.
    """
    from nanochat_tui.config import ConfigError, apply_overrides, diff

    saved = read_saved()
    warnings: list[str] = []
    name = startup_prefab(prefab, saved)
    try:
        state = AppState.from_prefab(name)
    except ConfigError as err:
        if prefab:  # the user asked for it explicitly: let the caller report it
            raise
        state = _fallback_state(name, err, warnings)
    if not prefab and isinstance(saved.get("overrides"), dict) and saved.get("prefab") == name:
        try:
            state.config = apply_overrides(state.base_config, saved["overrides"])
            state.overrides = {k: new for k, _o, new in diff(state.base_config, state.config)}
        except ConfigError as err:
            warnings.append(f"saved overrides dropped: {err}")
    if overrides:
        state.config = apply_overrides(state.config, overrides)
        state.overrides = {k: new for k, _o, new in diff(state.base_config, state.config)}
    if isinstance(saved.get("last_pane"), str):
        state.last_pane = saved["last_pane"]
    run = saved.get("run")
    if isinstance(run, str) and run and Path(run).is_dir():
        state.saved_run = Path(run)
    ckpt = saved.get("checkpoint")
    if isinstance(ckpt, str) and ckpt:
        meta = read_meta(Path(ckpt))
        if meta is not None and Path(ckpt).name.isdigit():
            state.checkpoint = CheckpointInfo(Path(ckpt), int(Path(ckpt).name), meta)
        else:
            warnings.append(f"saved checkpoint {ckpt} is gone")
    return state, warnings


def _fallback_state(name: str, err: Exception, warnings: list[str]) -> AppState:
    """'tiny' in place of a saved prefab that no longer loads; the bundled one when a broken user
    file named tiny.yaml shadows it (the app opens either way)."""
    from nanochat_tui.config import ConfigError

    state = None
    if name != "tiny":
        with contextlib.suppress(ConfigError):
            state = AppState.from_prefab("tiny")
    if state is None:
        state = AppState.from_prefab("bundled:tiny")
    warnings.append(f"saved prefab unavailable ({err}); using '{state.prefab_name}'")
    return state
