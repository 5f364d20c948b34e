"""Config schema, prefabs, overrides, validation and diff. Never imports Textual or JAX.

The names below are loaded on first use (PEP 562), so importing the package (the TUI does, before
its first frame) does not pull in pydantic and yaml.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_LAZY = {
    "ConfigError": "loader",
    "apply_overrides": "loader",
    "diff": "loader",
    "list_prefabs": "loader",
    "load_config": "loader",
    "load_prefab": "loader",
    "save_prefab": "loader",
    "to_yaml": "loader",
    "validate_patch": "loader",
    "PATCHABLE_FIELDS": "schema",
    "Config": "schema",
}

__all__ = [
    "PATCHABLE_FIELDS",
    "Config",
    "ConfigError",
    "apply_overrides",
    "diff",
    "list_prefabs",
    "load_config",
    "load_prefab",
    "save_prefab",
    "to_yaml",
    "validate_patch",
]

if TYPE_CHECKING:
    from nanochat_tui.config.loader import (
        ConfigError,
        apply_overrides,
        diff,
        list_prefabs,
        load_config,
        load_prefab,
        save_prefab,
        to_yaml,
        validate_patch,
    )
    from nanochat_tui.config.schema import PATCHABLE_FIELDS, Config


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
