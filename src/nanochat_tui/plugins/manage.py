"""What the Plugins pane and ``nanochat-tui plugins`` share: rows to show, and switching a plugin
off or on in ``config_dir()/plugins.yaml`` (written atomically; read at the next start)."""

from __future__ import annotations

from nanochat_tui.plugins import get_registry


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
    """Add or remove ``name`` in plugins.yaml's ``disabled`` list; returns what changed."""
    import yaml

    from nanochat_tui import paths
    from nanochat_tui.errors import UserError
    from nanochat_tui.plugins import PLUGINS_FILE, disabled_plugins
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
