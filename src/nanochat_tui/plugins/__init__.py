"""The one registry that built-ins and plugins both use.

A plugin is a Python package exposing an entry point in the group ``nanochat_tui.plugins`` that
points at a function ``register(registry: Registry) -> None``. Built-in screens, panels and config
categories register through the very same calls (see ``builtins.py``), so a new panel or screen
is one file plus one entry.

References are ``"module:attribute"`` strings, imported only when used, so registering costs
nothing at start-up and a plugin's heavy imports (JAX, torch) wait until its screen opens.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "nanochat_tui.plugins"
log = logging.getLogger(__name__)


def resolve(ref: str) -> Any:
    """Import ``"package.module:attr"``."""
    module_name, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class ScreenEntry:
    name: str  # id used in config/state, e.g. "config"
    title: str  # tab label
    key: str  # single key that switches to it
    ref: str  # "module:Class" of a textual Screen or Widget (the app decides)
    order: int = 100


@dataclass(frozen=True)
class PanelEntry:
    type: str  # the ``type:`` in a prefab's ui.screens[].panels[]
    ref: str  # "module:Class" implementing panels.base.Panel
    description: str = ""


@dataclass(frozen=True)
class CategoryEntry:
    title: str  # shown on the config screen
    section: str  # top-level config key, or "plugins.<name>"
    ref: str | None = None  # pydantic model validating a plugin section ("module:Model")


@dataclass
class Registry:
    screens: dict[str, ScreenEntry] = field(default_factory=dict)
    panels: dict[str, PanelEntry] = field(default_factory=dict)
    categories: dict[str, CategoryEntry] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # name -> "module:factory" (telemetry)
    failed: dict[str, str] = field(default_factory=dict)  # plugin name -> error message

    def add_screen(self, name: str, title: str, key: str, ref: str, order: int = 100) -> None:
        self.screens[name] = ScreenEntry(name, title, key, ref, order)

    def add_panel(self, type_: str, ref: str, description: str = "") -> None:
        self.panels[type_] = PanelEntry(type_, ref, description)

    def add_category(self, title: str, section: str, ref: str | None = None) -> None:
        self.categories[title] = CategoryEntry(title, section, ref)

    def add_source(self, name: str, ref: str) -> None:
        self.sources[name] = ref

    def ordered_screens(self) -> list[ScreenEntry]:
        return sorted(self.screens.values(), key=lambda s: (s.order, s.name))


_registry: Registry | None = None


def get_registry(load_plugins: bool = True) -> Registry:
    """The process-wide registry: built-ins first, then every installed plugin."""
    global _registry
    if _registry is None:
        from nanochat_tui.plugins import builtins

        registry = Registry()
        builtins.register(registry)
        if load_plugins:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                registry = load_plugin(registry, ep.name, ep.load)
        _registry = registry
    return _registry


def load_plugin(registry: Registry, name: str, load: Callable[[], Any]) -> Registry:
    """Import one plugin and let it register, all or nothing.

    The plugin registers into a copy; the copy replaces ``registry`` only if import and
    registration both finish. Anything a plugin raises — ``SystemExit``, a ``BaseException`` of
    its own, a ``KeyboardInterrupt`` subclass — disables that plugin with a message in
    ``registry.failed``; only a real Ctrl+C (exactly ``KeyboardInterrupt``) goes on up.
    """
    trial = Registry(
        dict(registry.screens),
        dict(registry.panels),
        dict(registry.categories),
        dict(registry.sources),
        dict(registry.failed),
    )
    try:
        register = load()
        if not callable(register):
            raise TypeError(f"entry point is {type(register).__name__}, not a register function")
        register(trial)
    except BaseException as err:  # a plugin must not take the app down
        if type(err) is KeyboardInterrupt:
            raise
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        registry.failed[name] = f"disabled ({reason[:200]})"
        log.warning("plugin %s disabled: %s", name, reason[:500])
        return registry
    return trial


def reset_registry() -> None:
    """For tests."""
    global _registry
    _registry = None
