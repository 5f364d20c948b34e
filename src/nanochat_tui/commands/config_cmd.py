"""``nanochat-tui config``: list prefabs, list keys, show a resolved config, diff against a prefab."""

from __future__ import annotations

import argparse


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["prefabs", "keys", "show", "diff"], help="what to print")
    parser.add_argument("prefab", nargs="?", default="tiny", help="prefab name or YAML path")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


def run(args: argparse.Namespace) -> int:
    from nanochat_tui.config import diff, list_prefabs, load_config, load_prefab, to_yaml
    from nanochat_tui.config.loader import field_info, known_keys

    if args.action == "prefabs":
        for name, path in list_prefabs().items():
            cfg = load_prefab(str(path))
            print(f"{name:12} {cfg.hardware}  [{path}]")
    elif args.action == "keys":
        for key in known_keys():
            info = field_info(key)
            print(f"{key:34} {info.description or '' if info else ''}")
    elif args.action == "show":
        print(to_yaml(load_config(args.prefab, args.overrides)), end="")
    else:
        for key, old, new in diff(
            load_prefab(args.prefab), load_config(args.prefab, args.overrides)
        ):
            print(f"{key}: {old!r} -> {new!r}")
    return 0
