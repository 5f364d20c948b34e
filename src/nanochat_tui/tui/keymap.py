"""The one key table: the app's bindings, the help screen and the palette all come from it.

Each entry has a stable ``id``; a user remaps keys in ``config_dir()/keymap.yaml``::

    app.help: f1          # binding id: key (Textual key names, comma-separate alternatives)
    pane.chat: c
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.binding import Binding

from nanochat_tui import paths

KEYMAP_FILE = "keymap.yaml"


@dataclass(frozen=True)
class KeySpec:
    id: str
    key: str
    description: str
    scope: str  # "global" or a pane name
    action: str = ""  # textual action string
    show: bool = True  # offered in the palette


GLOBAL_KEYS: tuple[KeySpec, ...] = (
    KeySpec("app.help", "question_mark", "Show keys and help", "global", "help"),
    KeySpec("app.palette", "ctrl+p", "Command palette", "global", "command_palette", show=False),
    KeySpec("app.debug", "ctrl+d", "Toggle debug log panel", "global", "toggle_debug"),
    KeySpec("app.events", "l", "Toggle the run's event log panel", "global", "toggle_events"),
    KeySpec(
        "app.quit",
        "q",
        "Quit (asks first if a run, edits or a reply would be lost)",
        "global",
        "quit",
    ),
)


def pane_keys(screens: list) -> list[KeySpec]:
    """Pane switch keys from registry ScreenEntry objects (ids ``pane.<name>``)."""
    return [
        KeySpec(
            f"pane.{s.name}", s.key, f"Switch to {s.title}", "global", f"switch_pane('{s.name}')"
        )
        for s in screens
    ]


def bindings_for(specs: list[KeySpec]) -> list[Binding]:
    return [
        Binding(s.key, s.action, s.description, show=False, id=s.id, priority=False) for s in specs
    ]


def widget_keys(widget: object, scope: str) -> list[KeySpec]:
    """KeySpecs of a pane's own ``BINDINGS`` (those with an id), for help and palette;
    ``widget`` may be the pane class (help lists panes that were never opened)."""
    out = []
    cls = widget if isinstance(widget, type) else type(widget)
    for b in getattr(cls, "BINDINGS", []):
        if isinstance(b, Binding) and b.id:
            out.append(KeySpec(b.id, b.key, b.description, scope, b.action))
    return out


def display_key(key: str) -> str:
    """'question_mark' -> '?', 'ctrl+p' -> '^p' (readable in 80 columns)."""
    names = {"question_mark": "?", "escape": "esc", "enter": "⏎"}
    parts = []
    for k in key.split(","):
        k = names.get(k.strip(), k.strip())
        parts.append("^" + k[5:] if k.startswith("ctrl+") and len(k) == 6 else k)
    return "/".join(parts)


def keymap_path() -> Path:
    return paths.config_dir() / KEYMAP_FILE


def keymap_display_path() -> str:
    """keymap.yaml's path as shown to users ($NANOCHAT_TUI_HOME kept symbolic, ~ for home)."""
    if paths.home_override() is not None:
        return "$NANOCHAT_TUI_HOME/config/" + KEYMAP_FILE
    path = str(keymap_path())
    home = str(Path.home())
    return "~" + path[len(home) :] if path.startswith(home) else path


def load_user_keymap(path: Path | None = None) -> tuple[dict[str, str], list[str]]:
    """The user's ``{binding id: key}`` overrides and any warnings (bad file, unknown ids)."""
    path = path or keymap_path()
    if not path.is_file():
        return {}, []
    import yaml  # only when a keymap file exists: keeps yaml off the first frame

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        return {}, [f"{path}: not readable YAML ({type(err).__name__}); keymap ignored"]
    if not isinstance(data, dict):
        return {}, [f"{path}: expected 'binding.id: key' lines; keymap ignored"]
    keymap = {str(k): str(v) for k, v in data.items() if isinstance(v, (str, int))}
    bad = [str(k) for k, v in data.items() if not isinstance(v, (str, int))]
    return keymap, [f"{path}: ignored {', '.join(bad)} (value must be a key)"] if bad else []


def effective_key(spec: KeySpec, keymap: dict[str, str]) -> str:
    return keymap.get(spec.id, spec.key)
