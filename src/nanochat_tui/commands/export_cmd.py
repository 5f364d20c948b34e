"""``nanochat-tui export RUN_DIR|STEP_DIR --format hf|onnx|nanochat OUT`` and
``nanochat-tui import NANOCHAT_DIR OUT_RUN_DIR`` (docs/export.md). The formats are the registry's
(``ExportFormatEntry``: the built-in table's three, and any a plugin adds)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "import":
        parser.add_argument(
            "source",
            help="a nanochat checkpoint folder (model_<step>.pt and meta_<step>.json), e.g. "
            "~/.cache/nanochat/base_checkpoints/d20",
        )
        parser.add_argument("out", help="the run directory to create")
        parser.add_argument("--step", type=int, help="the step to import (default: the latest)")
        parser.add_argument(
            "--tokenizer",
            help="nanochat's tokenizer.pkl (default: the folder's, else "
            "$NANOCHAT_BASE_DIR/tokenizer/tokenizer.pkl)",
        )
        return
    parser.add_argument(
        "path", help="run directory (latest checkpoint) or a checkpoint step directory"
    )
    parser.add_argument("out", help="output directory (created; must be empty unless --force)")
    formats = _formats()
    parser.add_argument(
        "--format",
        required=True,
        choices=list(formats),
        help="; ".join(f"{f.name}: {f.description}" for f in formats.values()),
    )
    parser.add_argument("--force", action="store_true", help="write into a non-empty directory")


def run(args: argparse.Namespace) -> int:
    if args.command == "import":
        return _import(args)
    from nanochat_tui.export.source import check_out_dir, load_source, prepare_out_dir

    check_out_dir(args.out, force=args.force)
    print(f"loading {args.path} …", file=sys.stderr, flush=True)
    source = load_source(args.path)
    from nanochat_tui.registry import resolve

    entry = _formats()[args.format]
    check, write = resolve(entry.check), resolve(entry.write)  # imported only when used
    check(source)  # refuse before anything is written
    files = write(source, prepare_out_dir(args.out, force=args.force))
    for path in files:
        print(path)
    step = source.meta.get("step")
    print(f"exported step {step} of {source.path} as {args.format}", file=sys.stderr)
    return 0


def _formats():
    """The registered export formats by name (``ExportFormatEntry``)."""
    from nanochat_tui.plugin_host import get_registry

    return get_registry().export_formats


def _import(args: argparse.Namespace) -> int:
    from nanochat_tui.export.importer import import_checkpoint

    print(f"importing {args.source} …", file=sys.stderr, flush=True)
    step_dir = import_checkpoint(args.source, args.out, step=args.step, tokenizer=args.tokenizer)
    print(step_dir.parent.parent)
    print(
        f"imported step {step_dir.name} as a run; chat with `nanochat-tui chat "
        f"{step_dir.parent.parent}`, fine-tune with --set run.init_from=...",
        file=sys.stderr,
    )
    return 0
