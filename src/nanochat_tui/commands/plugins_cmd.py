"""``nanochat-tui plugins``: installed plugins, their versions, what each registered, failures;
``plugins disable NAME`` / ``plugins enable NAME`` edit ``config_dir()/plugins.yaml``."""

from __future__ import annotations

import argparse
import json


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=["list", "enable", "disable"], default="list")
    parser.add_argument("plugin", nargs="?", help="plugin name (for enable/disable)")
    parser.add_argument("--json", action="store_true", help="one JSON object per plugin")


def run(args: argparse.Namespace) -> int:
    from nanochat_tui.errors import UserError
    from nanochat_tui.plugin_host import plugin_rows, set_disabled

    if args.action in ("enable", "disable"):
        if not args.plugin:
            raise UserError(
                f"plugins {args.action} needs a plugin name", "see `nanochat-tui plugins`"
            )
        print(set_disabled(args.plugin, args.action == "disable"))
        return 0
    rows = plugin_rows()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print("no plugins installed (entry-point group nanochat_tui.plugins)")
        return 0
    for row in rows:
        version = f" {row['version']}" if row["version"] else ""
        print(
            f"{row['name']}{version}  {row['status']}"
            + (f": {row['message']}" if row["message"] else "")
        )
        for item in row["registered"]:
            print(f"    {item}")
    return 0
