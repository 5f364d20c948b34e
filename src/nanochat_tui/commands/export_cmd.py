"""``nanochat-tui export RUN_DIR|STEP_DIR --format hf|onnx|nanochat OUT`` and
``nanochat-tui import NANOCHAT_DIR OUT_RUN_DIR`` (docs/export.md)."""

from __future__ import annotations

import argparse
import sys

FORMATS = ("hf", "onnx")


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", help="run directory (latest checkpoint) or a checkpoint step directory"
    )
    parser.add_argument("out", help="output directory (created; must be empty unless --force)")
    parser.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="hf: transformers' nanochat type; onnx: the forward pass for onnxruntime",
    )
    parser.add_argument("--force", action="store_true", help="write into a non-empty directory")


def run(args: argparse.Namespace) -> int:
    from nanochat_tui.export.source import check_out_dir, load_source, prepare_out_dir

    check_out_dir(args.out, force=args.force)
    print(f"loading {args.path} …", file=sys.stderr, flush=True)
    source = load_source(args.path)
    check, write = _exporter(args.format)
    check(source)  # refuse before anything is written
    files = write(source, prepare_out_dir(args.out, force=args.force))
    for path in files:
        print(path)
    step = source.meta.get("step")
    print(f"exported step {step} of {source.path} as {args.format}", file=sys.stderr)
    return 0


def _exporter(fmt: str):
    """(check, write) for a format; the format's module is imported only when used."""
    if fmt == "hf":
        from nanochat_tui.export.hf import check_exportable, export_hf

        return check_exportable, export_hf
    if fmt == "onnx":
        from nanochat_tui.export.onnx_graph import check_exportable, export_onnx

        return check_exportable, export_onnx
    raise AssertionError(fmt)
