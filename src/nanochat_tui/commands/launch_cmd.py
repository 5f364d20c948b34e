"""``nanochat-tui launch PREFAB --cloud C --accelerator A [--spot]``: train a prefab on a cloud as a
SkyPilot managed job (orchestrator/launch.py). Shows the cost and time table first and asks before
launching (``--yes`` skips the question; ``--dry-run`` shows the Task and has SkyPilot dry-run it,
launching nothing); then streams the job's status and logs. Needs the ``cloud`` extra."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prefab", help="prefab name or YAML path")
    parser.add_argument("--cloud", required=True, help="gcp, aws, azure, lambda, kubernetes, ...")
    parser.add_argument(
        "--accelerator",
        required=True,
        help="per node: NAME:COUNT (H100:8) or a TPU slice (tpu-v6e-8)",
    )
    parser.add_argument("--spot", action="store_true", help="spot/preemptible (recovered on loss)")
    parser.add_argument("--region", default="", help="region (default: any, cheapest first)")
    parser.add_argument("--nodes", type=int, default=1, help="hosts (default 1)")
    parser.add_argument("--name", help="job and run name (default <prefab>-<YYYYmmdd-HHMMSS>)")
    parser.add_argument(
        "--bucket", help="bucket for runs and checkpoints (default nanochat-<name>)"
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key (dotted, repeatable)",
    )  # fmt: skip
    parser.add_argument("--yes", action="store_true", help="launch without asking")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="show the table and the task, and have SkyPilot dry-run it (nothing is launched)",
    )


def run(args: argparse.Namespace) -> int:
    from nanochat_tui.config import load_config
    from nanochat_tui.config.loader import to_yaml
    from nanochat_tui.errors import UserError
    from nanochat_tui.orchestrator import launch

    config = load_config(args.prefab, args.overrides)
    name = args.name or f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.nodes < 1:
        raise UserError(f"--nodes {args.nodes} must be at least 1", "pass --nodes 1 or more")
    spec = launch.LaunchSpec(
        prefab=args.prefab,
        cloud=args.cloud,
        accelerator=args.accelerator,
        spot=args.spot,
        nodes=args.nodes,
        name=name,
        bucket=args.bucket or "",
        region=args.region,
        overrides=tuple(args.overrides),
    )
    launch.require_sky()
    estimate = launch.cost_table(config, spec)
    for row in estimate.rows:
        print(f"  {row.label:<16} {row.value}")
    folder = Path(tempfile.mkdtemp(prefix="nanochat-launch-"))
    config_path = folder / "config.yaml"
    config_path.write_text(to_yaml(config))
    workdir = launch.project_root(__file__)
    task = launch.build_task(spec, str(config_path), workdir)
    print(f"  {'bucket':<16} {spec.bucket_name} → {launch.CHECKPOINTS}")
    if args.dry_run:
        for heading, text in launch.task_summary(task):
            print(f"  {heading}:")
            print("\n".join(f"    {line}" for line in text.splitlines()))
        print("SkyPilot dry run (nothing is launched) …", flush=True)
        plan = launch.launch(spec, task, dryrun=True)
        print(plan.rstrip())
        print(f"SkyPilot accepts {name}: `nanochat-tui launch` without --dry-run submits it")
        return 0
    if not args.yes:
        answer = input(f"launch {name} (~${estimate.cost:,.2f})? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("not launched")
            return 1
    job = launch.launch(spec, task)
    print(f"managed job {name}: {job}", flush=True)
    print(f"  logs: sky jobs logs {name}   ·   cancel: sky jobs cancel -n {name}")
    launch.stream_status(name, sys.stdout)
    return 0
