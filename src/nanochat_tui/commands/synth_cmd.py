"""``nanochat-tui synth PROJECT``: constitution-driven synthetic data from an OpenAI-compatible
endpoint, with a progress bar (docs/alignment.md, "Synthetic data")."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

log = logging.getLogger("nanochat_tui.synth")


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", help="the project whose SOUL principles drive the critiques")
    parser.add_argument(
        "--endpoint",
        default="http://127.0.0.1:8000/v1",
        metavar="URL",
        help="base URL of an OpenAI-compatible API (default: a local `nanochat-tui serve`)",
    )
    parser.add_argument("--model", required=True, help="the model name the endpoint knows")
    key = parser.add_mutually_exclusive_group()
    key.add_argument(
        "--key-name",
        metavar="NAME",
        help="API key stored in the keyring under NAME (asked for, hidden, when missing)",
    )
    key.add_argument("--api-key-env", metavar="NAME", help="API key from environment variable NAME")
    parser.add_argument(
        "--prompts", metavar="FILE", help='JSONL of {"id"?, "prompt"} (default: embedded set)'
    )
    parser.add_argument("--set-name", default="synth", help="name of the set (default: synth)")
    parser.add_argument("--limit", type=int, help="use only the first N prompts")
    parser.add_argument("--concurrency", type=int, default=4, help="rows in flight (default 4)")
    parser.add_argument("--rpm", type=float, help="most requests per minute")
    parser.add_argument("--tpm", type=float, help="most tokens per minute (estimated, settled)")
    parser.add_argument(
        "--price-per-1k", type=float, default=0.0, metavar="X", help="cost per 1000 tokens"
    )
    parser.add_argument("--max-tokens", type=int, default=256, help="per reply (default 256)")
    parser.add_argument("--temperature", type=float, default=0.7, help="default 0.7")
    parser.add_argument(
        "--max-retries", type=int, default=5, help="retries of a 429/5xx/timeout (default 5)"
    )
    parser.add_argument(
        "--accept-all",
        action="store_true",
        help="mark new rows accepted (skip the Review screen) so training can use them",
    )


def resolve_api_key(key_name: str | None, api_key_env: str | None) -> str | None:
    """The API key from the keyring (asking for it, hidden, on a terminal) or the environment."""
    from nanochat_tui import secrets
    from nanochat_tui.errors import UserError

    if api_key_env:
        return secrets.secret_from_env(api_key_env, "--api-key-env", "use --key-name")
    if not key_name:
        return None
    value = secrets.get_secret(key_name)
    if value:
        return value
    if not sys.stdin.isatty():
        raise UserError(
            f"no API key stored under the name {key_name!r}",
            "run this command in a terminal (it asks for the key, hidden, and stores it), "
            "store it in the Generate screen, or use --api-key-env",
        )
    import getpass

    value = getpass.getpass(f"API key for {key_name!r} (input hidden, stored in the keyring): ")
    if not value.strip():
        raise UserError("no key entered", "try again, or use --api-key-env")
    result = secrets.set_secret(key_name, value)
    if result.warning:
        print(f"warning: {result.warning}", file=sys.stderr)
    return value.strip()


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from nanochat_tui.align.endpoint import Endpoint
    from nanochat_tui.align.synth import Generator, SynthSettings

    settings = SynthSettings(
        project=args.project,
        set_name=args.set_name,
        prompts=Path(args.prompts) if args.prompts else None,
        limit=args.limit,
        concurrency=args.concurrency,
        rpm=args.rpm,
        tpm=args.tpm,
        price_per_1k=args.price_per_1k,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        max_retries=args.max_retries,
        accept_all=args.accept_all,
    )
    settings.validate()
    key = resolve_api_key(args.key_name, args.api_key_env)
    endpoint = Endpoint(args.endpoint, args.model, api_key=key)
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )
    task = bar.add_task("synth", total=None, info="")

    def on_progress(p) -> None:
        info = f"skipped {p.skipped} · {p.tokens} tok · ${p.cost:.4f} · ETA {fmt_seconds(p.eta())}"
        bar.update(task, total=p.total, completed=p.finished, info=info)

    def on_problem(problem) -> None:
        log.warning("synth: %s", problem.describe())
        bar.console.print(f"[yellow]{problem.describe()}[/]", markup=True, highlight=False)

    generator = Generator(settings, endpoint, on_progress=on_progress, on_problem=on_problem)
    paths = generator.paths
    console.print(
        f"{len(generator.prompts)} prompts × SOUL {generator.soul_version} "
        f"({len(generator.principles)} principles) → {paths.trace}",
        highlight=False,
    )

    # Ctrl-C stops like the TUI's Stop: no new rows start, rows in flight are dropped whole, what
    # was written stays. Our own handler, not asyncio's task cancellation (which a library can
    # swallow: CI once saw a run ignore Ctrl-C and finish). A second Ctrl-C interrupts at once.
    def on_sigint(signum, frame) -> None:
        if generator.stop.is_set():
            raise KeyboardInterrupt
        interrupted.append(True)
        generator.stop.set()

    interrupted: list[bool] = []
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with bar:
            progress = generator.run()
    except KeyboardInterrupt:
        interrupted.append(True)
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        console.print("interrupted: rows written so far are kept; rerun the same command to go on")
        return 130
    from nanochat_tui.align.synth_store import export

    exported, pending = export(paths)
    print(
        f"{progress.done} rows written, {progress.already} already there, "
        f"{progress.skipped} skipped; {progress.tokens} tokens (${progress.cost:.4f}, "
        f"{progress.requests} requests)"
    )
    print(
        f"datasets: {exported} accepted/edited rows in {paths.sft.name} and {paths.pref.name}; "
        f"{pending} pending review (Review screen, or rerun with --accept-all)"
    )
    if progress.stopped:
        print(f"stopped: {progress.stopped}", file=sys.stderr)
        return 1
    if progress.skipped:
        print("some rows were skipped: rerun the same command to retry them", file=sys.stderr)
    return 0
