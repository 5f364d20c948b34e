"""``nanochat-tui runs`` (table of runs, ``--lineage RUN_DIR``) and ``nanochat-tui control RUN_DIR checkpoint|stop|patch``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "runs":
        parser.add_argument(
            "--dir", type=Path, default=None, help="runs directory (default: user data)"
        )
        parser.add_argument(
            "--json", action="store_true", help="print JSON lines instead of a table"
        )
        parser.add_argument(
            "--lineage",
            type=Path,
            metavar="RUN_DIR",
            default=None,
            help="print the runs RUN_DIR descends from (base → sft → dpo) with their SOUL "
            "versions and datasets",
        )
    else:
        parser.add_argument(
            "run_dir", type=Path, help="the run directory (see `nanochat-tui runs`)"
        )
        parser.add_argument("action", choices=["checkpoint", "stop", "patch", "status"])
        parser.add_argument("changes", nargs="*", metavar="KEY=VALUE", help="for patch")


def _age(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def format_table(summaries) -> str:
    """The runs as a table; a failed run's reason on the line under its row."""
    rows = [("NAME", "STATUS", "STEP", "MODE", "STARTED", "DIR")]
    reasons = [""]
    for s in summaries:
        status = f"{s.status} ({s.detail})" if s.detail else s.status
        step = "-" if s.step is None else str(s.step)
        rows.append((s.name, status, step, s.mode, _age(s.started), str(s.run_dir)))
        reasons.append(s.reason)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row, reason in zip(rows, reasons, strict=True):
        cells = zip(row[:-1], widths, strict=True)
        lines.append("  ".join(cell.ljust(w) for cell, w in cells) + "  " + row[-1])
        if reason:
            lines.append(f"  ↳ {reason}")
    return "\n".join(lines)


def status_line(s) -> str:
    """'NAME: STATUS (detail) at step N [mode]'; before the first step 'no step yet'."""
    detail = f" ({s.detail})" if s.detail else ""
    where = "no step yet" if s.step is None else f"at step {s.step:,}"
    reason = f": {s.reason}" if s.reason else ""
    return f"{s.name}: {s.status}{detail}, {where} [{s.mode}]{reason}"


def print_lineage(run_dir: Path, runs_dir: Path | None, as_json: bool) -> int:
    """``runs --lineage RUN_DIR``: the chain, root first (JSON lines with ``--json``)."""
    from nanochat_tui.errors import UserError
    from nanochat_tui.orchestrator import lineage

    if not run_dir.expanduser().is_dir():
        raise UserError(
            f"no run directory at {run_dir}", "pass a run directory (see `nanochat-tui runs`)"
        )
    nodes = lineage.resolve(run_dir, runs_dir)
    if len(nodes) == 1 and nodes[0].problem:  # not a run at all: one message, not a chain
        raise UserError(nodes[0].problem, "pass a run directory (see `nanochat-tui runs`)")
    if as_json:
        import json

        for node in lineage.as_json(nodes):
            print(json.dumps(node))
    else:
        print(lineage.describe(nodes))
    return 0


def run(args: argparse.Namespace) -> int:
    from nanochat_tui.orchestrator import runner

    if args.command == "runs" and getattr(args, "lineage", None) is not None:
        return print_lineage(args.lineage, args.dir, args.json)
    if args.command == "runs":
        from nanochat_tui.orchestrator.summaries import list_runs

        summaries = list_runs(args.dir)
        if args.json:
            import json

            for s in summaries:
                print(json.dumps({**s.__dict__, "run_dir": str(s.run_dir)}))
        elif not summaries:
            print("no runs yet — start one with `nanochat-tui run tiny` (or from the TUI)")
        else:
            print(format_table(summaries))
        return 0

    from nanochat_tui.config.loader import _split_override
    from nanochat_tui.errors import UserError

    handle = runner.attach(args.run_dir)
    if args.action == "status":
        print(status_line(handle.summary()))
        return 0
    if args.action == "patch":
        if not args.changes:
            raise UserError(
                "patch needs KEY=VALUE pairs",
                "e.g. `control RUN_DIR patch optim.lr_multiplier=0.5`",
            )
        changes = dict(_split_override(c) for c in args.changes)
        typed = handle.patch(changes)
        print(f"patch sent: {typed} (watch events.jsonl for the 'patch' event)")
    elif args.action == "checkpoint":
        handle.checkpoint_now()
        print("checkpoint requested (saved after the current step)")
    else:
        if args.changes:
            raise UserError(f"{args.action} takes no KEY=VALUE arguments")
        handle.stop()
        print("stop requested (the run saves a checkpoint, then ends with status 'stopped')")
    return 0
