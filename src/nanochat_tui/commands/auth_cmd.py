"""``nanochat-tui auth set|status|delete wandb``: store or check a secret, never echoing it."""

from __future__ import annotations

import argparse
import sys


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["set", "status", "delete"], help="what to do")
    parser.add_argument("name", nargs="?", default="wandb", choices=["wandb"], help="which secret")
    parser.add_argument(
        "--verify",
        action="store_true",
        help=f"also check the key online: contacts {secrets_host()} (nothing is sent without it)",
    )


def secrets_host() -> str:
    from nanochat_tui.secrets import WANDB_HOST

    return WANDB_HOST


def _read_value(name: str) -> str:
    """getpass on a terminal (no echo); the first line of stdin otherwise (pipes, CI)."""
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"{name} API key (input hidden): ")
    return sys.stdin.readline()


def run(args: argparse.Namespace) -> int:
    from nanochat_tui import secrets
    from nanochat_tui.errors import UserError

    if args.action == "status":
        status = secrets.secret_status(args.name)
        print(f"{args.name}: {status.describe()}")
        if status.warning:
            print(f"warning: {status.warning}")
        if status.stored and args.verify:
            _verify(secrets.get_secret(args.name) or "")
        elif status.stored:
            mode = secrets.wandb_mode_from_env()
            print(f"mode: {'offline (' + mode + ')' if mode else 'online when reachable'}")
            print(f"  (not checked online; `auth status --verify` contacts {secrets.WANDB_HOST})")
        return 0 if status.stored else 1
    if args.action == "delete":
        removed = secrets.delete_secret(args.name)
        print(f"{args.name}: {'deleted' if removed else 'nothing stored'}")
        return 0
    value = _read_value(args.name).strip()
    problem = secrets.validate_secret(args.name, value)
    if problem:
        raise UserError(
            f"not stored: {problem}", "copy the key from https://wandb.ai/authorize and try again"
        )
    result = secrets.set_secret(args.name, value)
    where = "keyring" if result.backend == "keyring" else f"file {secrets.secrets_file()}"
    print(f"{args.name}: stored in {where} ✓ (value hidden)")
    if result.warning:
        print(f"warning: {result.warning}", file=sys.stderr)
    if args.verify:
        _verify(value)
    else:
        print(f"format OK; not checked online (add --verify to check it with {secrets.WANDB_HOST})")
    return 0


def _verify(value: str) -> None:
    """Say what is contacted before contacting it, then the one-line result."""
    from nanochat_tui import secrets

    print(f"checking the key with https://{secrets.WANDB_HOST} …", flush=True)
    print(secrets.verify_wandb_online(value))
