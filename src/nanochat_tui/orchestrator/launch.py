"""Launch a prefab on a cloud with SkyPilot: the managed-job ``Task``, a cost and time table, errors.

- ``build_task``: a ``sky.Task`` (Python API, no YAML) whose setup installs the project with uv and
  whose run is the headless ``nanochat-tui run`` on the resolved config (file-mounted), writing
  runs and checkpoints to a bucket mounted at ``/checkpoints`` (``MOUNT_CACHED``: the run appends
  to ``events.jsonl``, which a plain ``MOUNT`` cannot); a restarted job resumes its run when it has
  a checkpoint and starts it again otherwise (``run_script``); resources carry the cloud,
  accelerator, region, spot choice and managed-job recovery (``FAILOVER`` on demand, ``EAGER_NEXT_REGION``
  on spot). Several nodes find each other through SkyPilot's variables (commands/train_cmd.py).
- ``cost_table``: hours from the config's total FLOPs at a stated MFU over every device, and the
  price per hour from SkyPilot's catalog functions (``price_lookup`` lets tests use a local table).
- ``task_summary``: what the built Task will run (setup, run, resources, env, mounts), read back
  from the Task itself, for the CLI's ``--dry-run`` and the TUI's Launch screen.
- ``launch``: ``sky.jobs.launch`` (or, for a dry run, ``sky.launch(dryrun=True)``: SkyPilot's
  optimizer checks the task, nothing is provisioned) with cloud failures turned into one readable
  UserError (the cloud not enabled, with the clouds that are; missing credentials; no quota; no
  capacity). Catalog lookups that cannot reach the network are one UserError too.

SkyPilot is the optional ``cloud`` extra; without it ``require_sky`` says how to install it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import shlex
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def quiet_sky() -> Iterator[None]:
    """SkyPilot's functions called in this process (the catalog) print as if on its API server:
    spinner lines (``<sky-payload>…</sky-payload>``) and log lines about a catalog it could not
    download. Silence both; the caller reports a failure as one UserError."""
    from sky import sky_logging

    with sky_logging.silent():  # spinners off; it keeps ERROR lines, so raise the bar past them
        logging.getLogger("sky").setLevel(logging.CRITICAL + 1)
        yield  # silent() puts the logger's level back


def setup_script(extra: str) -> str:
    """Install uv, then the project (with the accelerator's JAX) from the synced workdir."""
    return "\n".join(
        [
            "set -e",
            "command -v uv >/dev/null || pip install --quiet uv",
            f"uv sync --extra {extra}",
        ]
    )


def run_script(
    spec: LaunchSpec, checkpoints: str = CHECKPOINTS, config: str = REMOTE_CONFIG
) -> str:
    """The headless run on the resolved config; runs and checkpoints go to the bucket mount.

    A managed job restarted after a preemption (or an error) runs this again. It resumes the run
    from its last checkpoint when there is one (``rundir.latest_checkpoint``, what ``run
    --resume`` needs), and otherwise starts the run over in the same run directory: a job stopped
    before its first checkpoint leaves a config and events but nothing to resume, and ``run
    --resume`` refuses that. Only node 0 clears the directory (the other nodes touch it only after
    ``jax.distributed`` start-up, which waits for node 0). Anything but a clear answer from the
    check stops the script before it removes anything. ``checkpoints`` and ``config`` say where
    the bucket and the config are (tests run the script on a local folder)."""
    runs = f"{checkpoints}/runs"
    run_dir = f"{runs}/{spec.name}"
    q = shlex.quote
    check = (
        "from nanochat_tui import rundir; "
        f'print("resume" if rundir.latest_checkpoint({json.dumps(run_dir)}) else "fresh")'
    )
    fresh = ["uv", "run", "nanochat-tui", "run", config, "--quiet", "--name", spec.name]
    fresh += ["--set", f"run.runs_dir={runs}"]
    resume = ["uv", "run", "nanochat-tui", "run", "--resume", run_dir, "--quiet"]
    return "\n".join(
        [
            "set -e",
            f"next=$(uv run python -c {q(check)})",
            'case "$next" in',
            f"  resume) {' '.join(map(q, resume))} ;;",
            "  fresh)  # no checkpoint yet: start the run over in the same directory",
            '    if [ "${SKYPILOT_NODE_RANK:-0}" = 0 ]; then rm -rf ' + q(run_dir) + "; fi",
            f"    {' '.join(a if a.startswith('~/') else q(a) for a in fresh)} ;;",
            f'  *) echo "cannot tell whether {run_dir} has a checkpoint: $next" >&2; exit 1 ;;',
            "esac",
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
        {CHECKPOINTS: sky.Storage(name=spec.bucket_name, mode=sky.StorageMode.MOUNT_CACHED)}
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
    import requests
    from sky.clouds import service_catalog as catalog

    try:
        with quiet_sky():
            return _catalog_price(catalog, cloud, acc, spot, region)
    except requests.RequestException as err:
        raise UserError(
            f"SkyPilot could not download its {cloud} catalog for the price "
            f"({type(err).__name__}; no network?)",
            "connect to the internet and try again; SkyPilot keeps the catalog in "
            "~/.sky/catalogs and refreshes it every few hours",
        ) from None


def _catalog_price(catalog: Any, cloud: str, acc: Accelerator, spot: bool, region: str) -> float:
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


def enabled_clouds() -> list[str] | None:
    """The clouds SkyPilot has enabled (lower-case, as ``sky check`` last found them), asked of
    its API server; None when it cannot say."""
    require_sky()
    from sky.client import sdk

    try:
        return sorted(str(cloud).lower() for cloud in sdk.get(sdk.enabled_clouds()))
    except Exception:  # the answer only adds to an error message being built
        return None


def explain_cloud_error(
    err: BaseException,
    spec: LaunchSpec,
    enabled: Callable[[], list[str] | None] = enabled_clouds,
) -> UserError | None:
    """A UserError for the cloud failures a user can fix (None for anything else). For those,
    ``enabled()`` says which clouds SkyPilot has enabled: a cloud missing from them is the
    failure to report, whatever SkyPilot called it (no credentials, no cloud storage for the
    bucket, no launchable resources)."""
    sky = require_sky()
    exc = sky.exceptions
    cloud_failures = (
        exc.NoCloudAccessError,
        exc.CloudUserIdentityError,
        exc.NotSupportedError,
        exc.ResourcesUnavailableError,
    )
    if not isinstance(err, cloud_failures):
        return None
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # SkyPilot colours its hints
    cloud = spec.cloud.lower()
    check = (
        f"set up {spec.cloud} credentials, then run `sky check {cloud}` (it says what is missing)"
    )
    clouds = enabled()
    if clouds is not None and cloud not in clouds:
        return UserError(
            f"{spec.cloud} is not enabled in SkyPilot (enabled clouds: {', '.join(clouds) or 'none'})",
            check,
        )
    if isinstance(err, exc.NoCloudAccessError | exc.CloudUserIdentityError) or (
        "credential" in text.lower()
    ):
        first = text.splitlines()[0][:200] if text else ""
        return UserError(f"no usable credentials for {spec.cloud}: {first}".rstrip(": "), check)
    if isinstance(err, exc.NotSupportedError) and "storage" in text.lower():
        return UserError(
            f"SkyPilot has no cloud storage on {spec.cloud} for the checkpoint bucket",
            f"give the {spec.cloud} credentials storage access; `sky check {cloud}` lists it",
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


def launch(
    spec: LaunchSpec,
    task: Any,
    submit: Callable[[Any, str], Any] | None = None,
    *,
    dryrun: bool = False,
    enabled: Callable[[], list[str] | None] = enabled_clouds,
) -> Any:
    """Submit ``task`` as a managed job named ``spec.name`` (``sky.jobs.launch``, then wait for
    the request); with ``dryrun``, hand it to ``sky.launch(dryrun=True)`` instead (SkyPilot's
    optimizer checks it against the enabled clouds and the catalog; nothing is provisioned) and
    return what SkyPilot printed. Both go through SkyPilot's API server (it starts a local one
    when none runs). Cloud failures become one UserError (``explain_cloud_error``).
    ``submit(task, name)`` and ``enabled()`` stand in for SkyPilot in the TUI's tests."""
    sky = require_sky()

    def default_submit(t: Any, name: str) -> Any:
        if dryrun:
            out = io.StringIO()  # shown when accepted; a failure is one UserError instead
            sky.stream_and_get(sky.launch(t, cluster_name=name, dryrun=True), output_stream=out)
            return out.getvalue()
        return sky.stream_and_get(sky.jobs.launch(t, name=name))

    try:
        return (submit or default_submit)(task, spec.name)
    except Exception as err:
        explained = explain_cloud_error(err, spec, enabled)
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
