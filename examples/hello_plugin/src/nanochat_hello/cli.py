"""``nanochat-tui hello PREFAB [--set k=v ...]``: print the prefab's greeting."""

from __future__ import annotations


class HelloCommand:
    def add_arguments(self, name, parser) -> None:
        parser.add_argument("prefab", help="prefab name or YAML path")
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    def run(self, args) -> int:
        from nanochat_tui.config import load_config

        config = load_config(args.prefab, args.set)
        section = config.plugins.get("hello") or {"greeting": "hello", "times": 1}
        print(" ".join([section["greeting"]] * section["times"]))
        return 0


COMMAND = HelloCommand()
