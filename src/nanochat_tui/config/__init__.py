"""Config schema, prefabs, overrides, validation and diff. Never imports Textual or JAX."""

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
from nanochat_tui.config.schema import CATEGORIES, PATCHABLE_FIELDS, Config

__all__ = [
    "CATEGORIES",
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
