"""``nanochat-tui`` / ``nanochat-tui tui``: open the cockpit (on the ``tiny`` prefab by default)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prefab", default=None, help="prefab name or YAML path (default: last used, else tiny)"
    )
    parser.add_argument(
        "--run", dest="run_dir", default=None, metavar="RUN_DIR", help="attach to a run directory"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


def run(args: argparse.Namespace) -> int:
    from nanochat_tui.errors import UserError

    run_dir = Path(args.run_dir).expanduser() if args.run_dir else None
    if run_dir is not None:
        from nanochat_tui.rundir import is_run_dir

        if not is_run_dir(run_dir):
            raise UserError(
                f"{run_dir} is not a run directory (no config.yaml or events.jsonl)",
                "list runs with `nanochat-tui runs` and pass one of their folders to --run",
            )
    from nanochat_tui.tui.app import NanochatApp

    app = NanochatApp(
        prefab=args.prefab,
        overrides=args.overrides or None,
        attach=run_dir,
        debug=getattr(args, "debug", False),
    )
    result = app.run()
    if app.startup_error is not None:  # e.g. --prefab that does not exist or does not validate
        raise app.startup_error
    return int(app.return_code or 0) if result is None else int(result)
