"""``nanochat-tui`` entry point. Each subcommand is a registry entry (built-ins in ``builtins.py``,
modules in ``nanochat_tui/commands/``; plugins add theirs with ``registry.add_command``). Building
the parser imports the command modules, which import nothing heavy, so ``nanochat-tui`` (the TUI)
never pays for JAX at start-up. A plugin command that fails to load is left out with a warning
and the rest of the CLI works."""

from __future__ import annotations

import argparse
import sys

from nanochat_tui import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nanochat-tui",
        description="Configure, train, watch, steer, evaluate and chat with a small nanochat LLM.",
    )
    parser.add_argument("--version", action="version", version=f"nanochat-tui {__version__}")
    parser.add_argument("--debug", action="store_true", help="verbose logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, handler, help_ in commands():
        p = sub.add_parser(name, help=help_, description=help_)
        handler.add_arguments(name, p)
        p.set_defaults(handler=handler)
    return parser


# Commands that run JAX in this process: started on mimalloc (allocator.py) when run as a program.
ALLOCATOR_COMMANDS = {"tui", "run", "chat", "eval", "serve", "mcp", "export", "import"}


def commands() -> list[tuple[str, object, str]]:
    """``(name, handler, help)`` of every registered command: the built-ins, then each plugin
    command that loads; a warning for the rest."""
    from nanochat_tui.plugin_host import get_registry
    from nanochat_tui.registry import BUILTIN, resolve

    registry = get_registry()
    for plugin, why in registry.left_out:
        print(f"warning: plugin {plugin}: {why}", file=sys.stderr)
    out = []
    for entry in registry.commands.values():
        owner = registry.owners.get(f"command {entry.name}", "?")
        if owner == BUILTIN:
            out.append((entry.name, resolve(entry.ref), entry.help))
            continue
        try:
            handler = resolve(entry.ref)
            if not (callable(getattr(handler, "add_arguments", None)) and callable(handler.run)):
                raise TypeError(f"{entry.ref} has no add_arguments(name, parser) and run(args)")
        except Exception as err:
            print(
                f"warning: plugin {owner}: command {entry.name} left out ({err})", file=sys.stderr
            )
            continue
        out.append((entry.name, handler, entry.help))
    return out


def main(argv: list[str] | None = None) -> int:
    as_program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["tui", *argv]
    if as_program and argv[0] in ALLOCATOR_COMMANDS:
        from nanochat_tui import allocator

        allocator.reexec(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["tui", *argv])
    module = args.handler
    from nanochat_tui import logging_setup
    from nanochat_tui.errors import UserError

    try:
        logging_setup.setup_logging(getattr(args, "debug", False))
    except OSError as err:  # an unwritable data dir must not stop `config keys`
        print(f"warning: no app log ({err.strerror}: {err.filename})", file=sys.stderr)

    try:
        code = int(module.run(args) or 0)
        sys.stdout.flush()  # a closed pipe surfaces here, not in the interpreter's exit flush
        return code
    except BrokenPipeError:
        return _closed_pipe()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        from nanochat_tui.config import ConfigError

        if isinstance(err, ConfigError):
            print(f"error: {err}", file=sys.stderr)
            return 2
        if getattr(args, "debug", False):
            raise
        from nanochat_tui.crash import write_crash_dump

        path = write_crash_dump(err)
        print(
            f"error: {type(err).__name__}: {err}\n  → crash dump (no secrets): {path}",
            file=sys.stderr,
        )
        return 1


def _closed_pipe() -> int:
    """stdout's reader went away (``nanochat-tui config keys | head``): stop quietly, like cat.

    Python would report the failed flush at exit, so stdout is pointed at /dev/null first.
    """
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 141  # 128 + SIGPIPE, what a shell reports for a writer whose pipe closed


def program() -> None:
    """The console script: :func:`main`, then an exit that skips native teardown once JAX is
    loaded (:mod:`nanochat_tui.exiting`)."""
    from nanochat_tui.exiting import leave

    leave(main())


if __name__ == "__main__":
    program()
