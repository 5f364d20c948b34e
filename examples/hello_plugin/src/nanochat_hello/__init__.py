"""A minimal nanochat-tui plugin: every reference is a string, so registering imports nothing."""

from __future__ import annotations


def register(registry) -> None:
    registry.add_category("Hello", "plugins.hello", "nanochat_hello.config:HelloConfig")
    registry.add_panel("hello", "nanochat_hello.panel:HelloPanel", "the greeting and the step")
    registry.add_command("hello", "nanochat_hello.cli:COMMAND", "print a prefab's greeting")
    registry.add_source("hello", "nanochat_hello.source:make_source")
