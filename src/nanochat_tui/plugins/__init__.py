"""The one registry that built-ins and plugins both use.

A plugin is a Python package exposing an entry point in the group ``nanochat_tui.plugins`` that
points at a function ``register(registry: Registry) -> None``. Built-in screens, panels and config
categories register through the very same calls (see ``builtins.py``), so a new panel or screen
is one file plus one entry. What a plugin can add (docs/plugins.md):

- ``add_category``  a config category with its own pydantic model for ``plugins.<name>``,
  validated whenever a config loads (prefab, overrides, run dir) — not only in the TUI
- ``add_panel``     a live panel type for ``ui.screens[].panels[]``
- ``add_screen``    a pane (a Textual Widget; the app mounts it when its key is pressed)
- ``add_source``    a telemetry source polled by the run's hub
- ``add_command``   a CLI subcommand (``module:object`` with ``add_arguments`` and ``run``)
- ``add_engine_hooks`` a factory ``(config) -> jax_engine.hooks.EngineHooks | None``: an MLP
  replacement, extra loss terms, extra step metrics, optimizer groups (plugins/engine.py combines
  them; the orchestrator hands them to the engine, which never imports plugins)

References are ``"module:attribute"`` strings, imported only when used, so registering costs
nothing at start-up and a plugin's heavy imports (JAX, torch) wait until they are needed.

A plugin that fails to import, raises in ``register``, registers something invalid or takes a
name someone else already holds is disabled with a message (``registry.failed``); the app and CLI
start without it. A user disables a plugin in ``config_dir()/plugins.yaml`` (``disabled: [name]``).
"""

from __future__ import annotations

import copy
import importlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "nanochat_tui.plugins"
PLUGINS_FILE = "plugins.yaml"
BUILTIN = "builtin"
log = logging.getLogger(__name__)

_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


class RegistrationError(ValueError):
    """A plugin registered something invalid or already taken."""


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
    shape_fields: tuple[str, ...] = ()  # fields that change parameter shapes (resume refuses)


@dataclass(frozen=True)
class CommandEntry:
    name: str  # ``nanochat-tui <name>``
    ref: str  # "module:object" with add_arguments(name, parser) and run(args) -> int
    help: str = ""


@dataclass
class PluginInfo:
    """One installed plugin as the Plugins view and ``nanochat-tui plugins`` show it."""

    name: str
    version: str = ""
    status: str = "ok"  # "ok" | "failed" | "disabled"
    message: str = ""
    registered: list[str] = field(default_factory=list)  # "panel moe-heatmap", ...


@dataclass
class Registry:
    screens: dict[str, ScreenEntry] = field(default_factory=dict)
    panels: dict[str, PanelEntry] = field(default_factory=dict)
    categories: dict[str, CategoryEntry] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # name -> "module:factory" (telemetry)
    failed: dict[str, str] = field(default_factory=dict)  # plugin name -> error message
    commands: dict[str, CommandEntry] = field(default_factory=dict)
    engine_hooks: dict[str, str] = field(default_factory=dict)  # plugin -> "module:factory"
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)  # "panel loss" -> who registered it
    owner: str = BUILTIN  # who is registering now

    # ------------------------------------------------------------ registration calls

    def add_screen(self, name: str, title: str, key: str, ref: str, order: int = 100) -> None:
        _check_name("screen", name)
        _check_ref(ref)
        if not (isinstance(key, str) and len(key) == 1 and key.isprintable() and key != " "):
            raise RegistrationError(f"screen {name!r}: key must be one printable character")
        self._claim(f"screen {name}")
        self._claim(f"key {key}")
        self.screens[name] = ScreenEntry(name, str(title), key, ref, int(order))

    def add_panel(self, type_: str, ref: str, description: str = "") -> None:
        _check_name("panel", type_)
        _check_ref(ref)
        self._claim(f"panel {type_}")
        self.panels[type_] = PanelEntry(type_, ref, str(description))

    def add_category(
        self,
        title: str,
        section: str,
        ref: str | None = None,
        shape_fields: tuple[str, ...] = (),
    ) -> None:
        if not isinstance(title, str) or not title.strip():
            raise RegistrationError("category title must be a non-empty string")
        if self.owner != BUILTIN:
            name = section.removeprefix("plugins.") if isinstance(section, str) else ""
            if not (section.startswith("plugins.") and _NAME.match(name)):
                raise RegistrationError(
                    f"category {title!r}: a plugin's section must be 'plugins.<name>' "
                    f"(got {section!r})"
                )
            if ref is None:
                raise RegistrationError(f"category {title!r}: a plugin section needs a model ref")
        if ref is not None:
            _check_ref(ref)
        self._claim(f"category {title}")
        self._claim(f"section {section}")
        self.categories[title] = CategoryEntry(title, section, ref, tuple(shape_fields))

    def add_source(self, name: str, ref: str) -> None:
        _check_name("telemetry source", name)
        _check_ref(ref)
        self._claim(f"source {name}")
        self.sources[name] = ref

    def add_command(self, name: str, ref: str, help: str = "") -> None:
        _check_name("command", name)
        _check_ref(ref)
        self._claim(f"command {name}")
        self.commands[name] = CommandEntry(name, ref, str(help))

    def add_engine_hooks(self, ref: str) -> None:
        """``ref`` names ``factory(config) -> EngineHooks | None`` (None: not on for this config)."""
        _check_ref(ref)
        self._claim(f"engine hooks {self.owner}")
        self.engine_hooks[self.owner] = ref

    # ------------------------------------------------------------ queries

    def ordered_screens(self) -> list[ScreenEntry]:
        return sorted(self.screens.values(), key=lambda s: (s.order, s.name))

    def section_category(self, section: str) -> CategoryEntry | None:
        return next((c for c in self.categories.values() if c.section == section), None)

    # ------------------------------------------------------------ bookkeeping

    def _claim(self, what: str) -> None:
        holder = self.owners.get(what)
        if holder is not None:
            by = "a built-in" if holder == BUILTIN else f"plugin {holder!r}"
            raise RegistrationError(f"{what} is already registered by {by}")
        self.owners[what] = self.owner
        if self.owner != BUILTIN and self.owner in self.plugins:
            self.plugins[self.owner].registered.append(what)

    def copy(self) -> Registry:
        return copy.deepcopy(self)


def _check_ref(ref: Any) -> None:
    if not isinstance(ref, str) or not _REF.match(ref):
        raise RegistrationError(f"reference {ref!r} is not 'package.module:attribute'")


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise RegistrationError(
            f"{kind} name {name!r} must be lower-case letters, digits, '-' or '_'"
        )


_registry: Registry | None = None


def disabled_plugins() -> tuple[set[str], str | None]:
    """Plugin names the user switched off in ``config_dir()/plugins.yaml`` and a warning."""
    from nanochat_tui import paths

    path = paths.config_dir() / PLUGINS_FILE
    if not path.is_file():
        return set(), None
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        return set(), f"{path}: not readable YAML ({type(err).__name__}); no plugin disabled"
    names = data.get("disabled", []) if isinstance(data, dict) else None
    if not isinstance(names, list):
        return set(), f"{path}: expected 'disabled: [name, ...]'; no plugin disabled"
    return {str(n) for n in names}, None


def get_registry(load_plugins: bool = True) -> Registry:
    """The process-wide registry: built-ins first, then every installed, enabled plugin."""
    global _registry
    if _registry is None:
        from nanochat_tui.plugins import builtins

        registry = Registry()
        builtins.register(registry)
        if load_plugins:
            off, warning = disabled_plugins()
            if warning:
                log.warning(warning)
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                version = _version(ep)
                if ep.name in off:
                    registry.plugins[ep.name] = PluginInfo(
                        ep.name, version, "disabled", f"disabled in {PLUGINS_FILE}"
                    )
                    continue
                registry = load_plugin(registry, ep.name, ep.load, version)
        _registry = registry
    return _registry


def _version(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return str(getattr(dist, "version", "") or "")


def load_plugin(
    registry: Registry, name: str, load: Callable[[], Any], version: str = ""
) -> Registry:
    """Import one plugin and let it register, all or nothing.

    The plugin registers into a copy; the copy replaces ``registry`` only if import and
    registration both finish. Anything a plugin raises — ``SystemExit``, a ``BaseException`` of
    its own, a ``KeyboardInterrupt`` subclass, an invalid or colliding registration — disables
    that plugin with a message in ``registry.failed``; only a real Ctrl+C (exactly
    ``KeyboardInterrupt``) goes on up.
    """
    trial = registry.copy()
    trial.plugins[name] = PluginInfo(name, version)
    trial.owner = name
    try:
        register = load()
        if not callable(register):
            raise TypeError(f"entry point is {type(register).__name__}, not a register function")
        register(trial)
    except BaseException as err:  # a plugin must not take the app down
        if type(err) is KeyboardInterrupt:
            raise
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        message = f"disabled ({reason[:200]})"
        registry.failed[name] = message
        registry.plugins[name] = PluginInfo(name, version, "failed", message)
        log.warning("plugin %s disabled: %s", name, reason[:500])
        return registry
    trial.owner = BUILTIN
    return trial


def reset_registry() -> None:
    """For tests."""
    global _registry
    _registry = None
