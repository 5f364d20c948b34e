"""Config screen categories (title -> top-level section). Plain data: importing it does not
import pydantic, so the plugin registry can list categories before the config layer loads."""

from __future__ import annotations

# Plugins add theirs via the plugin registry.
CATEGORIES: dict[str, str] = {
    "Core model": "model",
    "Data": "data",
    "Optimization": "optim",
    "Training": "train",
    "Devices": "mesh",
    "Run": "run",
    "Alignment": "align",
    "Preferences": "pref",
    "Telemetry": "telemetry",
}
