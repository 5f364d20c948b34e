"""``nanochat-tui project``: list, create and show projects, diff SOUL versions, check datasets."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

ACTIONS = ("list", "create", "show", "soul-diff", "datasets")


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS, help="what to do")
    parser.add_argument(
        "args",
        nargs="*",
        metavar="ARG",
        help="create: NAME; show: [VERSION]; soul-diff: A B (versions, e.g. v1 v2); "
        "datasets: [DATASET]",
    )
    parser.add_argument(
        "-p", "--project", default=None, help="the project (default: 'default', created on use)"
    )
    parser.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        metavar="RUN_DIR|tokenizer.json",
        help="datasets: count tokens with a run's tokenizer (default: characters)",
    )
    parser.add_argument(
        "--max-len",
        type=int,
        default=None,
        help="datasets: flag rows longer than this (default: the run's sequence_len + 1 with "
        "--tokenizer RUN_DIR, else no limit)",
    )
    parser.add_argument("--json", action="store_true", help="datasets: one JSON object per file")


def _want(args: argparse.Namespace, low: int, high: int, usage: str) -> list[str]:
    from nanochat_tui.errors import UserError

    if not low <= len(args.args) <= high:
        raise UserError(f"wrong arguments for 'project {args.action}'", f"usage: {usage}")
    return list(args.args)


def run(args: argparse.Namespace) -> int:
    from nanochat_tui import projects

    if args.action == "list":
        _want(args, 0, 0, "nanochat-tui project list")
        projects.open_project()  # the default project exists from first use
        for name in projects.list_projects():
            p = projects.open_project(name)
            latest = p.latest()
            label = projects.version_label(latest) if latest else "no SOUL"
            print(f"{name:20} {label:6} {len(p.versions()):3} versions  "
                  f"{len(p.datasets()):3} datasets  {len(p.prefabs()):3} prefabs  {p.path}")  # fmt: skip
        return 0
    if args.action == "create":
        (name,) = _want(args, 1, 1, "nanochat-tui project create NAME")
        project = projects.create_project(name)
        print(f"created project {name!r} at {project.path} (SOUL v0001: the starter SOUL)")
        return 0
    project = projects.open_project(args.project)
    if args.action == "show":
        rest = _want(args, 0, 1, "nanochat-tui project show [VERSION] [-p PROJECT]")
        print_show(project, rest[0] if rest else None)
    elif args.action == "soul-diff":
        a, b = _want(args, 2, 2, "nanochat-tui project soul-diff A B [-p PROJECT]")
        text = project.diff(a, b)
        print(text, end="") if text else print(f"no differences ({a} vs {b})")
    else:
        rest = _want(args, 0, 1, "nanochat-tui project datasets [DATASET] [--tokenizer RUN_DIR]")
        return print_datasets(project, rest[0] if rest else None, args)
    return 0


def print_show(project, version: str | None) -> None:
    """The project's folders, its versions and one SOUL version (the latest by default)."""
    from nanochat_tui import projects

    saved = project.read(version)
    soul, interface = saved.soul(), saved.interface()
    versions = ", ".join(projects.version_label(v) for v in project.versions())
    print(f"project {project.name} ({project.path})")
    print(f"SOUL versions: {versions}; showing {saved.label}")
    print(f"datasets: {', '.join(p.stem for p in project.datasets()) or 'none'}")
    print(f"prefabs: {', '.join(p.stem for p in project.prefabs()) or 'none'}")
    print(f"name: {soul.name}; {len(soul.principles)} principles")
    print("tools: " + ", ".join(t.name for t in interface.all_tools()) + " (python is built in)")
    print()
    print(saved.soul_text, end="")


def _tokenizer(path: Path | None):
    if path is None:
        return None
    from nanochat_tui.jax_engine.tokenizer import Tokenizer  # tokenizers only, no JAX

    return Tokenizer.load(path)


def print_datasets(project, only: str | None, args: argparse.Namespace) -> int:
    """Rows, length stats and every bad line of each dataset; exit 1 when any line is bad."""
    from nanochat_tui.align.datasets import check_dataset, run_max_len

    tokenizer = _tokenizer(args.tokenizer)
    max_len = args.max_len
    if max_len is None and args.tokenizer is not None and args.tokenizer.is_dir():
        max_len = run_max_len(args.tokenizer)
    files = [project.dataset(only)] if only else project.datasets()
    if not files:
        print(
            f"project {project.name!r} has no datasets: add JSONL files to {project.datasets_dir}"
        )
        return 0
    bad = False
    for path in files:
        report = check_dataset(path, tokenizer, max_len)
        bad = bad or report.issue_count > 0
        stats = report.stats()
        if args.json:
            print(json.dumps({
                "dataset": path.stem, "path": str(path), "unit": report.unit,
                "chat_rows": report.chat_rows, "preference_rows": report.preference_rows,
                "lines": report.lines, "issues": report.issue_count,
                "lengths": None if stats is None else dataclasses.asdict(stats),
                "errors": [{"line": i.line, "message": i.message} for i in report.issues],
            }))  # fmt: skip
            continue
        unit = report.unit if report.unit == "tokens" else "chars (no tokenizer given)"
        print(f"{path.stem}: {report.chat_rows} chat rows, {report.preference_rows} preference "
              f"rows, {report.issue_count} bad lines  ({path})")  # fmt: skip
        if stats is not None:
            print(f"  length in {unit}: min {stats.min}, median {stats.median:g}, "
                  f"mean {stats.mean:.1f}, p95 {stats.p95}, max {stats.max}")  # fmt: skip
        for issue in report.issues:
            print(f"  line {issue.line}: {issue.message}")
        if report.issue_count > len(report.issues):
            print(f"  … and {report.issue_count - len(report.issues)} more")
    return 1 if bad else 0
