"""``nanochat-tui config``: list prefabs, list keys, show a resolved config, diff configs."""

from __future__ import annotations

import argparse


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["prefabs", "keys", "show", "diff"], help="what to print")
    parser.add_argument("prefab", nargs="?", default="tiny", help="prefab name or YAML path")
    parser.add_argument(
        "other",
        nargs="?",
        default=None,
        help="diff only: a second prefab to compare with (default: PREFAB with --set applied)",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


def run(args: argparse.Namespace) -> int:
    from nanochat_tui.config import load_config, to_yaml

    if args.action == "prefabs":
        print_prefabs()
    elif args.action == "keys":
        from nanochat_tui.config.loader import field_info, known_keys

        for key in known_keys():
            info = field_info(key)
            print(f"{key:34} {info.description or '' if info else ''}")
    elif args.action == "show":
        print(to_yaml(load_config(args.prefab, args.overrides)), end="")
    else:
        print_diff(args.prefab, args.other, args.overrides)
    return 0


def print_prefabs() -> None:
    """Bundled and user prefabs with their origin; broken files with the reason; both folders."""
    from nanochat_tui import paths
    from nanochat_tui.config.loader import scan_prefabs

    entries = scan_prefabs()
    for origin, folder in (
        ("bundled", paths.bundled_prefabs_dir()),
        ("user", paths.user_prefabs_dir()),
    ):
        mine = [e for e in entries if e.origin == origin]
        print(f"{origin} prefabs ({folder}):")
        if not mine:
            hint = "save one from the Config pane (ctrl+s)" if origin == "user" else ""
            print(f"  (none{'; ' + hint if hint else ''})")
        for entry in mine:
            if entry.error:
                print(f"  {entry.name:14} ✗ broken: {_one_line(entry.error, str(entry.path))}")
            else:
                note = "  (shadowed by the user prefab of the same name)" if entry.shadowed else ""
                print(f"  {entry.name:14} {entry.hardware}{note}")


def print_diff(prefab: str, other: str | None, overrides: list[str]) -> None:
    """PREFAB vs PREFAB+--set, or PREFAB vs OTHER(+--set); 'no differences' when they match."""
    from nanochat_tui.config import diff, load_config, load_prefab

    base = load_prefab(prefab)
    current = load_config(other or prefab, overrides)
    rows = diff(base, current)
    if not rows:
        print(f"no differences ({prefab} vs {other or prefab + ' with --set'})")
    for key, old, new in rows:
        print(f"{key}: {old!r} -> {new!r}")


def _one_line(message: str, path: str) -> str:
    """The reason alone: the path is already on the line's folder header."""
    text = message.replace(path + ": ", "").replace(f" in {path}", "").replace(path, "the file")
    return " ".join(text.split())[:200]
