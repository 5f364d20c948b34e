"""This process's registry: the built-in table, then every installed plugin the user has not
switched off in ``config_dir()/plugins.yaml`` (``disabled: [name]``); and what the Plugins pane
and ``nanochat-tui plugins`` share: rows to show, and switching a plugin off or on.

It sits on the ground floor beside the registry (it imports only the registry, the built-in table,
paths, errors and the run-dir writer), so every layer may ask it for the registry. Plugins are
loaded through their entry points on first use; none is imported here by name.
"""

from __future__ import annotations

import logging

from nanochat_tui.builtins import BUILTINS
from nanochat_tui.registry import Registry, load_installed

PLUGINS_FILE = "plugins.yaml"
log = logging.getLogger(__name__)

_registry: Registry | None = None


def get_registry(load_plugins: bool = True) -> Registry:
    """The process-wide registry: built-ins first, then every installed, enabled plugin."""
    global _registry
    if _registry is None:
        registry = Registry()
        for entry in BUILTINS:
            registry.add(entry)
        if load_plugins:
            off, warning = disabled_plugins()
            if warning:
                log.warning(warning)
            registry = load_installed(registry, off, f"disabled in {PLUGINS_FILE}")
        _registry = registry
    return _registry


def reset_registry() -> None:
    """Forget the loaded registry (tests; the next ``get_registry`` loads plugins again)."""
    global _registry
    _registry = None


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


def plugin_rows() -> list[dict]:
    """One dict per installed plugin: name, version, status, message, registered."""
    return [
        {
            "name": info.name,
            "version": info.version,
            "status": info.status,
            "message": info.message,
            "registered": list(info.registered),
        }
        for info in sorted(get_registry().plugins.values(), key=lambda i: i.name)
    ]


def set_disabled(name: str, disabled: bool) -> str:
    """Add or remove ``name`` in plugins.yaml's ``disabled`` list (written atomically; read at
    the next start); returns what changed."""
    import yaml

    from nanochat_tui import paths
    from nanochat_tui.errors import UserError
    from nanochat_tui.rundir import write_atomic

    off, warning = disabled_plugins()
    if warning:
        raise UserError(warning, f"fix or delete {paths.config_dir() / PLUGINS_FILE}")
    known = {row["name"] for row in plugin_rows()}
    if name not in known and name not in off:
        raise UserError(
            f"no installed plugin is called {name!r}",
            f"installed: {', '.join(sorted(known)) or 'none'}",
        )
    off = (off | {name}) if disabled else (off - {name})
    path = paths.config_dir() / PLUGINS_FILE
    write_atomic(path, yaml.safe_dump({"disabled": sorted(off)}, sort_keys=True))
    state = "disabled" if disabled else "enabled"
    return f"{name} {state} (takes effect when nanochat-tui starts next; {path})"
