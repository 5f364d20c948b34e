"""Eval prompt presets: ``config_dir()/eval_presets.yaml``, written with defaults on first use.

A preset is a named prompt plus the mode it is meant for (``complete``: continue the text; ``chat``:
send as a user message). The Chat pane picks, edits and saves them; edits persist across restarts.
The defaults are the registry's eval presets (``EvalPresetEntry``: the built-in table's, and any a
plugin adds), written to the file the first time it is needed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import yaml

from nanochat_tui import paths
from nanochat_tui.errors import UserError
from nanochat_tui.registry import PRESET_MODES

FILE_NAME = "eval_presets.yaml"
Mode = Literal["complete", "chat"]


@dataclass
class Preset:
    name: str
    prompt: str
    mode: Mode = "complete"


def default_presets() -> list[Preset]:
    """The registered eval presets, in registration order."""
    from nanochat_tui.plugin_host import get_registry

    return [Preset(e.name, e.prompt, e.mode) for e in get_registry().eval_presets.values()]


def presets_path() -> Path:
    return paths.config_dir() / FILE_NAME


def _remedy(path: Path) -> str:
    return f"fix or delete {path} (defaults are written again when it is missing)"


def load_presets() -> list[Preset]:
    """The saved presets; writes the defaults the first time."""
    path = presets_path()
    if not path.exists():
        presets = default_presets()
        save_presets(presets)
        return presets
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise UserError(f"{path} is not valid YAML", _remedy(path)) from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}", _remedy(path)) from None
    items = data.get("presets") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise UserError(
            f"{path} must hold 'presets:' — a list of {{name, prompt, mode}}", _remedy(path)
        )
    out: list[Preset] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
            raise UserError(f"{path}: preset #{i + 1} needs a text 'prompt'", _remedy(path))
        mode = item.get("mode", "complete")
        if mode not in PRESET_MODES:
            raise UserError(
                f"{path}: preset #{i + 1} has mode '{mode}'; use complete or chat", _remedy(path)
            )
        out.append(Preset(str(item.get("name") or f"preset-{i + 1}"), item["prompt"], mode))
    return out


def save_presets(presets: list[Preset]) -> Path:
    """Write all presets atomically (a crash never leaves a half-written file)."""
    from nanochat_tui.rundir import write_atomic

    path = presets_path()
    text = yaml.safe_dump(
        {"presets": [asdict(p) for p in presets]}, sort_keys=False, allow_unicode=True
    )
    write_atomic(path, text)
    return path


def upsert(presets: list[Preset], preset: Preset) -> list[Preset]:
    """Replace the preset with the same name, or append it."""
    out = [p for p in presets if p.name != preset.name]
    index = next((i for i, p in enumerate(presets) if p.name == preset.name), len(out))
    out.insert(index, preset)
    return out
