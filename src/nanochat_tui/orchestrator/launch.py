"""Launch a prefab on a cloud with SkyPilot: the managed-job ``Task``, a cost and time table, errors.

- ``build_task``: a ``sky.Task`` (Python API, no YAML) whose setup installs the project with uv and
  whose run is the headless ``nanochat-tui run`` on the resolved config (file-mounted), writing
  runs and checkpoints to a bucket mounted at ``/checkpoints``; resources carry the cloud,
  accelerator, region, spot choice and managed-job recovery (``FAILOVER`` on demand, ``EAGER_NEXT_REGION``
  on spot). Several nodes find each other through SkyPilot's variables (commands/train_cmd.py).
- ``cost_table``: hours from the config's total FLOPs at a stated MFU over every device, and the
  price per hour from SkyPilot's catalog functions (``price_lookup`` lets tests use a local table).
- ``task_summary``: what the built Task will run (setup, run, resources, env, mounts), read back
  from the Task itself, for the CLI's ``--dry-run`` and the TUI's Launch screen.
- ``launch``: ``sky.jobs.launch`` with cloud failures turned into one readable UserError (missing
  credentials, no quota, no capacity).

SkyPilot is the optional ``cloud`` extra; without it ``require_sky`` says how to install it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nanochat_tui.errors import UserError

INSTALL = "install SkyPilot: `uv sync --extra cloud` (or `pip install 'nanochat-tui[cloud]'`)"
CHECKPOINTS = "/checkpoints"  # the bucket mount on every node
REMOTE_CONFIG = "~/nanochat-launch/config.yaml"
LAUNCH_MFU = 0.40  # stated, not measured: nanochat's speedrun reaches ~40-50% on 8×H100
# accelerator name (lower-case, SkyPilot spelling) -> peak dense bf16 FLOP/s of one device/chip
PEAKS: dict[str, float] = {
    "h200": 989e12,
    "h100": 989e12,
    "b200": 2250e12,
    "a100": 312e12,
    "a100-80gb": 312e12,
    "l40s": 362e12,
    "l4": 121e12,
    "tpu-v6e": 918e12,
    "tpu-v5e": 197e12,
    "tpu-v5litepod": 197e12,
    "tpu-v5p": 459e12,
    "tpu-v4": 275e12,
}


@dataclass(frozen=True)
class Accelerator:
    """``H100:8`` → (``H100``, 8 per node, 8 devices); ``tpu-v6e-8`` → (``tpu-v6e-8``, 1, 8 chips)."""

    name: str
    count: int
    devices: int
    peak: float

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.count}"


def parse_accelerator(text: str) -> Accelerator:
    """Parse ``NAME:COUNT`` (GPUs) or ``tpu-<gen>-<chips>`` (a TPU slice); UserError if unknown."""
    fix = "use e.g. --accelerator H100:8, A100:8, L4:1 or tpu-v6e-8, tpu-v5e-16"
    tpu = re.fullmatch(r"(tpu-v\w+?)-(\d+)", text.strip().lower())
    if tpu:
        family, chips = tpu.group(1), int(tpu.group(2))
        if family not in PEAKS:
            raise UserError(f"unknown TPU generation {family!r} in --accelerator {text}", fix)
        return Accelerator(f"{family}-{chips}", 1, chips, PEAKS[family])
    name, _, count = text.partition(":")
    if not name or (count and not count.isdigit()):
        raise UserError(f"--accelerator {text!r} is not NAME:COUNT", fix)
    peak = PEAKS.get(name.lower())
    if peak is None:
        raise UserError(f"no peak FLOP/s known for accelerator {name!r}", fix)
    n = int(count or 1)
    return Accelerator(name, n, n, peak)


@dataclass(frozen=True)
class LaunchSpec:
    """What ``nanochat-tui launch`` was asked for."""

    prefab: str
    cloud: str
    accelerator: str
    spot: bool = False
    nodes: int = 1
    name: str = ""
    bucket: str = ""
    region: str = ""
    overrides: tuple[str, ...] = ()

    @property
    def bucket_name(self) -> str:
        return self.bucket or f"nanochat-{self.name}".lower()


def require_sky() -> Any:
    """The ``sky`` module, or a UserError saying how to install it."""
    try:
        import sky
    except ImportError:
        raise UserError("SkyPilot is not installed (the `cloud` extra)", INSTALL) from None
    return sky


def setup_script(extra: str) -> str:
    """Install uv, then the project (with the accelerator's JAX) from the synced workdir."""
    return "\n".join(
        [
            "set -e",
            "command -v uv >/dev/null || pip install --quiet uv",
            f"uv sync --extra {extra}",
        ]
    )


def run_script(spec: LaunchSpec) -> str:
    """The headless run on the resolved config; runs and checkpoints go to the bucket mount."""
    argv = ["uv", "run", "nanochat-tui", "run", REMOTE_CONFIG, "--quiet", "--name", spec.name]
    argv += ["--set", f"run.runs_dir={CHECKPOINTS}/runs"]
    run = " ".join(shlex.quote(a) if not a.startswith("~/") else a for a in argv)
    # a managed job restarted after a preemption continues its own run from the last checkpoint
    resume = " ".join(["uv", "run", "nanochat-tui", "run", "--resume", f"{CHECKPOINTS}/runs/{spec.name}", "--quiet"])  # fmt: skip
    return "\n".join(
        [
            "set -e",
            f"if [ -f {CHECKPOINTS}/runs/{spec.name}/config.yaml ]; then",
            f"  {resume}",
            "else",
            f"  {run}",
            "fi",
        ]
    )


def cloud_of(name: str) -> Any:
    """SkyPilot's cloud object for ``name`` (gcp, aws, azure, lambda, kubernetes, ...)."""
    require_sky()
    from sky.utils import registry

    try:
        cloud = registry.CLOUD_REGISTRY.from_str(name)
    except ValueError:
        cloud = None
    if cloud is None:
        raise UserError(
            f"SkyPilot knows no cloud {name!r}", "use e.g. --cloud gcp, aws, azure, lambda"
        )
    return cloud


def build_task(spec: LaunchSpec, config_yaml_path: str, workdir: str) -> Any:
    """The SkyPilot managed-job Task for ``spec`` (built, not launched)."""
    sky = require_sky()
    acc = parse_accelerator(spec.accelerator)
    extra = "tpu" if acc.name.startswith("tpu-") else "cuda"
    task = sky.Task(
        name=spec.name,
        setup=setup_script(extra),
        run=run_script(spec),
        envs={"NANOCHAT_TUI_HOME": "~/nanochat", "WANDB_MODE": "offline"},
        workdir=workdir,
        num_nodes=spec.nodes,
    )
    task.set_file_mounts({REMOTE_CONFIG: config_yaml_path})
    task.set_storage_mounts(
        {CHECKPOINTS: sky.Storage(name=spec.bucket_name, mode=sky.StorageMode.MOUNT)}
    )
    task.set_resources(
        sky.Resources(
            cloud=cloud_of(spec.cloud),
            accelerators=acc.spec,
            use_spot=spec.spot,
            region=spec.region or None,
            job_recovery={
                "strategy": "EAGER_NEXT_REGION" if spec.spot else "FAILOVER",
                "max_restarts_on_errors": 3,
            },
        )
    )
    return task


def catalog_price(cloud: str, acc: Accelerator, spot: bool, region: str = "") -> float:
    """$ per hour of one node with ``acc`` on ``cloud`` (in ``region``, or the cheapest one),
    from SkyPilot's catalog: the cheapest host instance type that carries the accelerator, plus
    the accelerator where the cloud bills it apart (GCP)."""
    require_sky()
    from sky.clouds import service_catalog as catalog

    where = region or None
    instances, fuzzy = catalog.get_instance_type_for_accelerator(
        acc.name, acc.count, use_spot=spot, region=where, clouds=cloud
    )
    if not instances:
        near = f" (close: {', '.join(fuzzy[:5])})" if fuzzy else ""
        place = f" in {region}" if region else ""
        raise UserError(
            f"{cloud}{place} offers no {acc.spec}{' spot' if spot else ''} in SkyPilot's catalog{near}",
            "pick another --accelerator, --region or --cloud (`sky show-gpus` lists them)",
        )
    host = min(catalog.get_hourly_cost(t, spot, where, None, clouds=cloud) for t in instances)
    if cloud.lower() == "gcp" and not acc.name.startswith("tpu-"):
        host += catalog.get_accelerator_hourly_cost(acc.name, acc.count, spot, where, None, cloud)
    if cloud.lower() == "gcp" and acc.name.startswith("tpu-"):
        host = catalog.get_accelerator_hourly_cost(acc.name, acc.count, spot, where, None, cloud)
    return float(host)


@dataclass(frozen=True)
class CostRow:
    label: str
    value: str


@dataclass(frozen=True)
class CostEstimate:
    devices: int
    flops: float
    mfu: float
    hours: float
    price_per_hour: float
    rows: tuple[CostRow, ...]

    @property
    def cost(self) -> float:
        return self.hours * self.price_per_hour


def cost_table(
    config: Any,
    spec: LaunchSpec,
    price_lookup: Callable[[str, Accelerator, bool, str], float] = catalog_price,
    mfu: float = LAUNCH_MFU,
) -> CostEstimate:
    """Hours and dollars for ``config`` on ``spec``'s hardware (every device of every node)."""
    from nanochat_tui.config.estimates import flops_per_token, mesh_layout, total_tokens

    acc = parse_accelerator(spec.accelerator)
    devices = acc.devices * spec.nodes
    layout = mesh_layout(config, devices)  # refuses a mesh/batch that this hardware cannot split
    flops = flops_per_token(config.model) * total_tokens(config)
    hours = flops / (acc.peak * devices * mfu) / 3600
    per_hour = price_lookup(spec.cloud, acc, spec.spot, spec.region) * spec.nodes
    where = f"{spec.cloud} {spec.region}" if spec.region else spec.cloud
    rows = (
        CostRow(
            "hardware", f"{spec.nodes}× {acc.spec} on {where}" + (" (spot)" if spec.spot else "")
        ),
        CostRow("devices", f"{devices} (mesh {layout.label}, accum {layout.accum})"),
        CostRow("training FLOPs", f"{flops:.3g}"),
        CostRow("MFU (assumed)", f"{mfu:.0%}"),
        CostRow("est. time", f"{hours:.2f} h"),
        CostRow("price", f"${per_hour:,.2f}/h (SkyPilot catalog)"),
        CostRow("est. cost", f"${hours * per_hour:,.2f}"),
    )
    return CostEstimate(devices, flops, mfu, hours, per_hour, rows)


def task_summary(task: Any) -> list[tuple[str, str]]:
    """(heading, text) for each part of a built Task, read back from the Task object: what
    ``launch`` would submit."""
    resources = ", ".join(
        " ".join(
            part
            for part in (
                str(r.cloud),
                ",".join(f"{k}:{v}" for k, v in (r.accelerators or {}).items()),
                r.region or "",
                "spot" if r.use_spot else "on-demand",
                f"recovery {r.job_recovery['strategy']}" if r.job_recovery else "",
            )
            if part
        )
        for r in task.resources
    )
    mounts = [f"{dst} ← {src}" for dst, src in (task.file_mounts or {}).items()]
    mounts += [
        f"{dst} ← bucket {store.name} ({store.mode.value.lower()})"
        for dst, store in (task.storage_mounts or {}).items()
    ]
    envs = " ".join(f"{k}={v}" for k, v in sorted((task.envs or {}).items()))
    return [
        ("resources", f"{task.num_nodes} node(s): {resources}"),
        ("workdir", f"{task.workdir} (synced to every node)"),
        ("env", envs),
        ("mounts", "\n".join(mounts)),
        ("setup", task.setup or ""),
        ("run", task.run or ""),
    ]


def explain_cloud_error(err: BaseException, spec: LaunchSpec) -> UserError | None:
    """A UserError for the cloud failures a user can fix (None for anything else)."""
    sky = require_sky()
    exc = sky.exceptions
    text = str(err)
    if isinstance(err, exc.NoCloudAccessError | exc.CloudUserIdentityError) or (
        "credential" in text.lower()
    ):
        return UserError(
            f"no usable credentials for {spec.cloud}: {text.splitlines()[0][:200] if text else ''}".rstrip(
                ": "
            ),
            f"set up {spec.cloud} credentials, then check them with `sky check {spec.cloud}`",
        )
    if isinstance(err, exc.ResourcesUnavailableError):
        if "quota" in text.lower():
            return UserError(
                f"no quota for {spec.accelerator} on {spec.cloud}",
                f"request a quota increase for {spec.accelerator} in your {spec.cloud} console, "
                "or try another --cloud",
            )
        return UserError(
            f"no capacity for {spec.accelerator}{' spot' if spec.spot else ''} on {spec.cloud} right now",
            "retry later, drop --spot, or try another --accelerator or --cloud",
        )
    return None


def launch(spec: LaunchSpec, task: Any, submit: Callable[[Any, str], Any] | None = None) -> Any:
    """Submit ``task`` as a managed job named ``spec.name``; cloud failures become UserErrors.
    ``submit(task, name)`` defaults to ``sky.jobs.launch`` then waiting for its request."""
    sky = require_sky()

    def default_submit(t: Any, name: str) -> Any:
        return sky.stream_and_get(sky.jobs.launch(t, name=name))

    try:
        return (submit or default_submit)(task, spec.name)
    except Exception as err:
        explained = explain_cloud_error(err, spec)
        if explained is not None:
            raise explained from None
        raise


def stream_status(name: str, out: Any) -> int:
    """Follow the managed job's logs (status lines included) until it ends; its exit code."""
    sky = require_sky()
    return int(sky.jobs.tail_logs(name=name, follow=True, output_stream=out) or 0)


def project_root(start: Any) -> str:
    """The checkout SkyPilot syncs as the workdir (the folder with pyproject.toml above ``start``)."""
    from pathlib import Path

    for folder in Path(start).resolve().parents:
        if (folder / "pyproject.toml").is_file() and (folder / "src" / "nanochat_tui").is_dir():
            return str(folder)
    raise UserError(
        "launch syncs the project's source to the cloud, but this install is not a checkout",
        "run `nanochat-tui launch` from a git checkout (`uv run nanochat-tui launch ...`)",
    )
