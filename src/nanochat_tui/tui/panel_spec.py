"""The one-line text form of a live panel spec: ``loss source=loss above=4 smoothing=0.9``."""

from __future__ import annotations

import shlex
from typing import Any

from nanochat_tui.config import ConfigError
from nanochat_tui.config.schema import PanelSpec
from nanochat_tui.panels.base import THRESHOLD_KEYS

_SPEC_KEYS = ("source", "title", "width", "height")


def parse_panel_text(text: str, base: PanelSpec | None = None) -> PanelSpec:
    """'loss source=loss above=4 smoothing=0.9' -> PanelSpec (first word = type when adding).

    Keys: source, title, width, height, above/below/warn_above/warn_below (thresholds; 'none'
    removes one); anything else goes to options. Raises ConfigError with a readable message.
    """
    from nanochat_tui.config.loader import parse_value
    from nanochat_tui.plugin_host import get_registry

    try:
        words = shlex.split(text)
    except ValueError as err:
        raise ConfigError(f"cannot parse '{text}': {err}") from None
    data: dict[str, Any] = base.model_dump() if base else {}
    if base is None:
        if not words or "=" in words[0]:
            raise ConfigError("start with a panel type, e.g. 'loss source=loss above=4'")
        data["type"] = words.pop(0)
    if data["type"] not in get_registry().panels:
        known = ", ".join(sorted(get_registry().panels))
        raise ConfigError(f"unknown panel type '{data['type']}'; known: {known}")
    data.setdefault("thresholds", {})
    data.setdefault("options", {})
    for word in words:
        key, eq, raw = word.partition("=")
        if not eq:
            raise ConfigError(f"'{word}' is not key=value (e.g. source=val_bpb, above=3.5)")
        value = parse_value(raw)
        if key in THRESHOLD_KEYS:
            if value is None or raw.lower() == "none":
                data["thresholds"].pop(key, None)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                data["thresholds"][key] = float(value)
            else:
                raise ConfigError(f"threshold {key} must be a number (got {raw!r})")
        elif key in _SPEC_KEYS:
            data[key] = value
        else:
            data["options"][key] = value
    try:
        return PanelSpec.model_validate(data)
    except Exception as err:  # pydantic ValidationError -> one readable line
        errors = getattr(err, "errors", lambda: [])()
        msg = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors) or str(err)
        raise ConfigError(f"invalid panel: {msg}") from None


def panel_text(spec: PanelSpec) -> str:
    """The editable one-line form of a spec (without its type)."""
    parts = []
    for key in _SPEC_KEYS:
        value = getattr(spec, key)
        if value is not None and not (key in ("width", "height") and value == 1):
            parts.append(f"{key}={shlex.quote(str(value))}")
    parts += [f"{k}={v}" for k, v in spec.thresholds.items()]
    parts += [f"{k}={v}" for k, v in spec.options.items()]
    return " ".join(parts)
