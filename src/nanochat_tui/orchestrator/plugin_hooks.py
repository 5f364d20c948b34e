"""Plugin engine hooks for one config, combined into the one ``EngineHooks`` the engine takes.

The orchestrator calls ``engine_hooks(config)`` before it starts the engine; the engine itself
never imports plugins (import-linter contract). Each plugin registered a factory
``(config) -> EngineHooks | None``; at most one may replace the MLP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nanochat_tui.errors import UserError
from nanochat_tui.jax_engine.hooks import EngineHooks
from nanochat_tui.plugin_host import get_registry
from nanochat_tui.registry import resolve


@dataclass(frozen=True)
class _FirstLabel:
    """Several plugins' ``param_label`` hooks: the first that names a group wins (hashable)."""

    fns: tuple[Callable[[list[str], Any], str | None], ...]

    def __call__(self, names: list[str], leaf: Any) -> str | None:
        for fn in self.fns:
            if (group := fn(names, leaf)) is not None:
                return group
        return None


def check_sections(config: Any) -> None:
    """Refuse a config that switches on a ``plugins.<name>`` section no loaded plugin claims."""
    registry = get_registry()
    for name, section in config.plugins.items():
        on = bool(section.get("enabled", True)) if isinstance(section, dict) else bool(section)
        if not on or registry.section_category(f"plugins.{name}") is not None:
            continue
        info = registry.plugins.get(name)
        why = f"it is {info.status}: {info.message}" if info else "no such plugin is installed"
        raise UserError(
            f"the config switches on plugins.{name}, but that plugin is not loaded ({why})",
            f"install or enable the plugin (`nanochat-tui plugins`), or set "
            f"plugins.{name}.enabled=false",
        )


def engine_hooks(config: Any) -> EngineHooks | None:
    """Every loaded plugin's hooks for ``config``, combined; None when no plugin changes the engine."""
    check_sections(config)
    registry = get_registry()
    shape = shape_fields(config)
    parts: list[tuple[str, EngineHooks]] = []
    for plugin, entry in registry.engine_hooks.items():
        try:
            hooks = resolve(entry.ref)(config)
        except UserError:
            raise
        except Exception as err:
            raise UserError(
                f"plugin {plugin} could not build its engine hooks: {type(err).__name__}: {err}",
                "fix or disable the plugin (`nanochat-tui plugins`; disabled: in plugins.yaml)",
            ) from err
        if hooks is not None and not hooks.empty:
            parts.append((plugin, hooks))
    if not parts:
        return EngineHooks(shape=shape) if shape else None
    mlps = [(name, h.mlp) for name, h in parts if h.mlp is not None]
    if len(mlps) > 1:
        names = " and ".join(name for name, _ in mlps)
        raise UserError(
            f"plugins {names} both replace the MLP", "switch one of them off in the config"
        )
    labels = tuple(h.param_label for _, h in parts if h.param_label is not None)
    return EngineHooks(
        mlp=mlps[0][1] if mlps else None,
        loss_terms=tuple(t for _, h in parts for t in h.loss_terms),
        step_metrics=tuple(m for _, h in parts for m in h.step_metrics),
        param_label=_FirstLabel(labels) if labels else None,
        transforms=tuple(t for _, h in parts for t in h.transforms),
        names=tuple(name for name, _ in parts),
        shape=shape,
    )


def model_mlp(config: Any) -> Any:
    """The MLP factory a plugin puts in ``config``'s model (None: the dense MLP); what chat and
    eval pass to ``ChatModel.load`` to rebuild a plugin-built checkpoint (``mlp_for``)."""
    hooks = engine_hooks(config)
    return hooks.mlp if hooks is not None else None


def shape_fields(config: Any) -> tuple[tuple[str, Any], ...]:
    """``(plugins.<name>.<field>, value)`` for every shape field of a plugin that is on."""
    out = []
    for category in get_registry().categories.values():
        name = category.section.removeprefix("plugins.")
        section = config.plugins.get(name)
        if not category.shape_fields or not isinstance(section, dict):
            continue
        if not section.get("enabled", True):
            continue
        out += [(f"{category.section}.{f}", section.get(f)) for f in category.shape_fields]
    return tuple(out)
