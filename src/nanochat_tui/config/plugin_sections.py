"""``plugins.<name>`` sections, validated by the pydantic model their plugin registered.

Every config that loads (prefab, ``--set`` overrides, a run dir's config.yaml, checkpoint meta)
goes through ``loader.validate`` and so through here: a section whose plugin is installed is
validated and normalised (defaults filled in) by that plugin's model, so a typo in an MoE field
fails before a run starts, in the CLI as in the TUI. A section no installed plugin claims is kept
as written (a config from a machine with more plugins still loads); the orchestrator refuses to
train a config that switches on a plugin that is not loaded.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError


def section_model(name: str) -> type[BaseModel] | None:
    """The pydantic model the plugin registered for ``plugins.<name>`` (None: unclaimed)."""
    from nanochat_tui.plugin_host import get_registry
    from nanochat_tui.registry import resolve

    entry = get_registry().section_category(f"plugins.{name}")
    if entry is None or entry.ref is None:
        return None
    model = resolve(entry.ref)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{entry.ref} is not a pydantic model")
    return model


def validate_sections(plugins: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validated, normalised plugin sections and the error lines (``plugins.x.field: why``)."""
    out: dict[str, Any] = {}
    errors: list[str] = []
    for name, section in plugins.items():
        try:
            model = section_model(name)
        except Exception as err:  # a plugin's schema that cannot be imported is its own fault
            errors.append(f"plugins.{name}: the plugin's schema did not load ({err})")
            continue
        if model is None:
            out[name] = section
            continue
        try:
            out[name] = model.model_validate(section, strict=True).model_dump(mode="json")
        except ValidationError as err:
            for e in err.errors():
                loc = ".".join(str(p) for p in ("plugins", name, *e["loc"]))
                msg = e["msg"].removeprefix("Value error, ")
                if e["type"] == "extra_forbidden":
                    known = ", ".join(model.model_fields)
                    errors.append(f"unknown key '{loc}' (known: {known})")
                else:
                    errors.append(f"{loc}: {msg}")
    return out, errors
