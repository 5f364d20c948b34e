"""The one registry: a typed entry per extension kind, used alike by built-ins and plugins.

It sits on the ground floor and imports nothing of ours (an import-linter contract), so every
layer can read it. Built-ins are declared in one table (``builtins.py``); a plugin is a Python
package exposing an entry point in the group ``nanochat_tui.plugins`` that points at
``register(registry: Registry) -> None``. The bundled plugins (``bundled/``: MoE, the designer)
register through the same group. The process-wide registry — built-ins, then every installed
plugin the user has not switched off — is ``plugin_host.get_registry()``. What a plugin can add
(docs/plugins.md):

- ``add_category``  a config category with its own pydantic model for ``plugins.<name>``,
  validated whenever a config loads (prefab, overrides, run dir) — not only in the TUI
- ``add_panel``     a live panel type for ``ui.screens[].panels[]``
- ``add_screen``    a pane (a Textual Widget; the app mounts it when its key is pressed)
- ``add_source``    a telemetry source polled by the run's hub
- ``add_command``   a CLI subcommand (``module:object`` with ``add_arguments`` and ``run``)
- ``add_engine_hooks`` a factory ``(config) -> jax_engine.hooks.EngineHooks | None``: an MLP
  replacement, extra loss terms, extra step metrics, optimizer groups (the orchestrator combines
  them and hands them to the engine, which never imports plugins)
- ``add_stage``     a training stage: a ``jax_engine.tasks.Task`` subclass (``train.stage``)
- ``add_export_format`` a format for ``nanochat-tui export --format``
- ``add_eval_preset`` a prompt preset for the Chat pane's evaluations

References are ``"module:attribute"`` strings, imported only when used, so registering costs
nothing at start-up and a plugin's heavy imports (JAX, torch) wait until they are needed.

A plugin that fails to import, raises in ``register``, registers something invalid or takes a
name someone else already holds is disabled with a message (``registry.failed``); the app and CLI
start without it.
"""

from __future__ import annotations

import copy
import importlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "nanochat_tui.plugins"
BUILTIN = "builtin"
PRESET_MODES = ("complete", "chat")
log = logging.getLogger(__name__)

_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_MODULE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*$")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


class RegistrationError(ValueError):
    """A plugin registered something invalid or already taken."""


def resolve(ref: str) -> Any:
    """Import ``"package.module:attr"`` (or a whole module, ``"package.module"``)."""
    module_name, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------- one entry type per kind


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
class SourceEntry:
    name: str
    ref: str  # "module:factory"; factory(run_dir, config) -> callable or iterator of events


@dataclass(frozen=True)
class CommandEntry:
    name: str  # ``nanochat-tui <name>``
    ref: str  # "module:object" or "module" with add_arguments(name, parser) and run(args) -> int
    help: str = ""


@dataclass(frozen=True)
class EngineHooksEntry:
    plugin: str  # who registered it (one factory per plugin)
    ref: str  # "module:factory"; factory(config) -> jax_engine.hooks.EngineHooks | None


@dataclass(frozen=True)
class StageEntry:
    name: str  # the value of ``train.stage`` (and of a pipeline step's ``stage``)
    ref: str  # "module:TaskClass", a jax_engine.tasks.Task subclass whose ``stage`` is ``name``
    description: str = ""


@dataclass(frozen=True)
class ExportFormatEntry:
    name: str  # ``nanochat-tui export --format <name>``
    write: str  # "module:function"; write(source, out_dir) -> list of files written
    check: str  # "module:function"; check(source) raises UserError before anything is written
    description: str = ""


@dataclass(frozen=True)
class EvalPresetEntry:
    name: str
    prompt: str
    mode: str = "complete"  # "complete": continue the text; "chat": send as a user message


Entry = (
    ScreenEntry
    | PanelEntry
    | CategoryEntry
    | SourceEntry
    | CommandEntry
    | StageEntry
    | ExportFormatEntry
    | EvalPresetEntry
)


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
    sources: dict[str, SourceEntry] = field(default_factory=dict)
    commands: dict[str, CommandEntry] = field(default_factory=dict)
    engine_hooks: dict[str, EngineHooksEntry] = field(default_factory=dict)  # by plugin
    stages: dict[str, StageEntry] = field(default_factory=dict)
    export_formats: dict[str, ExportFormatEntry] = field(default_factory=dict)
    eval_presets: dict[str, EvalPresetEntry] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # plugin name -> error message
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (plugin, why): CLI warns
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)  # "panel loss" -> who registered it
    owner: str = BUILTIN  # who is registering now

    # ------------------------------------------------------------ registration calls

    def add(self, entry: Entry) -> None:
        """Register one entry of any kind (the built-in table registers through this)."""
        if isinstance(entry, ScreenEntry):
            self.add_screen(entry.name, entry.title, entry.key, entry.ref, entry.order)
        elif isinstance(entry, PanelEntry):
            self.add_panel(entry.type, entry.ref, entry.description)
        elif isinstance(entry, CategoryEntry):
            self.add_category(entry.title, entry.section, entry.ref, entry.shape_fields)
        elif isinstance(entry, SourceEntry):
            self.add_source(entry.name, entry.ref)
        elif isinstance(entry, CommandEntry):
            self.add_command(entry.name, entry.ref, entry.help)
        elif isinstance(entry, StageEntry):
            self.add_stage(entry.name, entry.ref, entry.description)
        elif isinstance(entry, ExportFormatEntry):
            self.add_export_format(entry.name, entry.write, entry.check, entry.description)
        elif isinstance(entry, EvalPresetEntry):
            self.add_eval_preset(entry.name, entry.prompt, entry.mode)
        else:
            raise RegistrationError(f"{entry!r} is not a registry entry")

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
        self.sources[name] = SourceEntry(name, ref)

    def add_command(self, name: str, ref: str, help: str = "") -> None:
        """A plugin's command named like a built-in one is left out (a CLI warning), not fatal."""
        _check_name("command", name)
        _check_ref(ref, module_ok=True)
        if self.owner != BUILTIN and self.owners.get(f"command {name}") == BUILTIN:
            self.left_out.append(
                (self.owner, f"command {name} left out ('{name}' is a built-in command)")
            )
            return
        self._claim(f"command {name}")
        self.commands[name] = CommandEntry(name, ref, str(help))

    def add_engine_hooks(self, ref: str) -> None:
        """``ref`` names ``factory(config) -> EngineHooks | None`` (None: not on for this config)."""
        _check_ref(ref)
        self._claim(f"engine hooks {self.owner}")
        self.engine_hooks[self.owner] = EngineHooksEntry(self.owner, ref)

    def add_stage(self, name: str, ref: str, description: str = "") -> None:
        """``ref`` names a ``jax_engine.tasks.Task`` subclass whose ``stage`` is ``name``."""
        _check_name("stage", name)
        _check_ref(ref)
        self._claim(f"stage {name}")
        self.stages[name] = StageEntry(name, ref, str(description))

    def add_export_format(self, name: str, write: str, check: str, description: str = "") -> None:
        """``write(source, out_dir) -> [files]``; ``check(source)`` refuses before any write."""
        _check_name("export format", name)
        _check_ref(write)
        _check_ref(check)
        self._claim(f"export format {name}")
        self.export_formats[name] = ExportFormatEntry(name, write, check, str(description))

    def add_eval_preset(self, name: str, prompt: str, mode: str = "complete") -> None:
        _check_name("eval preset", name)
        if not isinstance(prompt, str) or not prompt.strip():
            raise RegistrationError(f"eval preset {name!r}: prompt must be non-empty text")
        if mode not in PRESET_MODES:
            raise RegistrationError(f"eval preset {name!r}: mode must be complete or chat")
        self._claim(f"eval preset {name}")
        self.eval_presets[name] = EvalPresetEntry(name, prompt, mode)

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


def _check_ref(ref: Any, module_ok: bool = False) -> None:
    ok = isinstance(ref, str) and (_REF.match(ref) or (module_ok and _MODULE.match(ref)))
    if not ok:
        raise RegistrationError(f"reference {ref!r} is not 'package.module:attribute'")


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise RegistrationError(
            f"{kind} name {name!r} must be lower-case letters, digits, '-' or '_'"
        )


# ---------------------------------------------------------------- loading plugins


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


def load_installed(registry: Registry, disabled: Iterable[str] = (), why: str = "") -> Registry:
    """``registry`` plus every plugin installed in the entry-point group, in the order found;
    the names in ``disabled`` are listed as disabled (``why``) and never imported."""
    off = set(disabled)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        version = _version(ep)
        if ep.name in off:
            registry.plugins[ep.name] = PluginInfo(ep.name, version, "disabled", why)
            continue
        registry = load_plugin(registry, ep.name, ep.load, version)
    return registry


def _version(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return str(getattr(dist, "version", "") or "")
