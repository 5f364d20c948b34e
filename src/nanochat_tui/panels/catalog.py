"""Built-in panel types and their classes, as plain strings (importing this costs nothing)."""

from __future__ import annotations

PANEL_DESCRIPTIONS: dict[str, str] = {
    "progress": "step bar, tokens, tok/s, ETA, elapsed",
    "loss": "training loss (+components), EMA smoothing option",
    "validation": "validation bpb over time + last value",
    "samples": "latest eval samples",
    "device": "MFU, device memory, host CPU/RAM",
    "timers": "data wait / compute / host breakdown",
    "preferences": "reward margins/accuracies (dpo, orpo, simpo), best/worst held-out pairs",
}

BUILTIN_PANELS: dict[str, str] = {
    "progress": "nanochat_tui.panels.builtin:ProgressPanel",
    "loss": "nanochat_tui.panels.builtin:LossPanel",
    "validation": "nanochat_tui.panels.builtin:ValidationPanel",
    "samples": "nanochat_tui.panels.builtin:SamplesPanel",
    "device": "nanochat_tui.panels.builtin:DevicePanel",
    "timers": "nanochat_tui.panels.builtin:TimersPanel",
    "preferences": "nanochat_tui.panels.preferences:PreferencesPanel",
}
