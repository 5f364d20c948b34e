"""``nanochat-tui launch``: the SkyPilot Task built for tpu-v6e-8 and H100:8 (asserted on SkyPilot's
own Task/Resources objects, never launched), the cost table (the catalog functions fed a local
table), the cloud error paths, and the CLI when SkyPilot cannot download its catalog. No test
reaches a cloud; tests/test_launch_server.py submits through SkyPilot's real API server and
tests/test_launch_resume.py runs the job script."""

from __future__ import annotations

import os

import pytest

from launch_fixtures import local_price, require_sky
from nanochat_tui.config import load_config
from nanochat_tui.errors import UserError
from nanochat_tui.orchestrator import launch

require_sky()
import sky  # noqa: E402  (after the skip: SkyPilot is the optional `cloud` extra)


def _spec(**kw) -> launch.LaunchSpec:
    base = dict(prefab="hundred", cloud="gcp", accelerator="tpu-v6e-8", name="d20-test")
    return launch.LaunchSpec(**{**base, **kw})


def test_parse_accelerators() -> None:
    tpu = launch.parse_accelerator("tpu-v6e-8")
    assert (tpu.name, tpu.count, tpu.devices, tpu.peak) == ("tpu-v6e-8", 1, 8, 918e12)
    gpu = launch.parse_accelerator("H100:8")
    assert (gpu.name, gpu.count, gpu.devices, gpu.peak) == ("H100", 8, 8, 989e12)
    with pytest.raises(UserError, match="no peak FLOP/s known"):
        launch.parse_accelerator("Z9000:8")


@pytest.mark.parametrize(
    ("cloud", "accelerator", "spot", "extra", "recovery"),
    [
        ("gcp", "tpu-v6e-8", False, "tpu", "FAILOVER"),
        ("aws", "H100:8", True, "cuda", "EAGER_NEXT_REGION"),
    ],
)
def test_task_for_tpu_and_h100(tmp_path, cloud, accelerator, spot, extra, recovery) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("name: hundred\n")
    spec = _spec(cloud=cloud, accelerator=accelerator, spot=spot, nodes=2)
    task = launch.build_task(spec, str(cfg), str(tmp_path))
    assert isinstance(task, sky.Task)
    assert task.name == "d20-test" and task.num_nodes == 2 and task.workdir == str(tmp_path)
    assert f"uv sync --extra {extra}" in task.setup
    assert task.run == launch.run_script(spec)  # run on a local folder by test_launch_resume.py
    assert f"nanochat-tui run {launch.REMOTE_CONFIG} --quiet --name d20-test" in task.run
    assert f"--set run.runs_dir={launch.CHECKPOINTS}/runs" in task.run
    assert f"--resume {launch.CHECKPOINTS}/runs/d20-test" in task.run  # recovery continues the run
    assert task.envs["NANOCHAT_TUI_HOME"] == "~/nanochat"
    assert task.file_mounts == {launch.REMOTE_CONFIG: str(cfg)}
    storage = task.storage_mounts[launch.CHECKPOINTS]
    # cached: the run appends to events.jsonl, which SkyPilot's plain MOUNT mode cannot do
    assert storage.name == "nanochat-d20-test" and storage.mode == sky.StorageMode.MOUNT_CACHED
    (res,) = list(task.resources)
    assert str(res.cloud).lower() == cloud
    want = {"tpu-v6e-8": 1} if extra == "tpu" else {"H100": 8}
    assert res.accelerators == want
    assert res.use_spot is spot
    assert res.job_recovery["strategy"] == recovery


def test_region_reaches_resources_and_the_summary_reads_the_task(tmp_path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("name: hundred\n")
    spec = _spec(cloud="aws", accelerator="H100:8", region="us-east-1", spot=True)
    task = launch.build_task(spec, str(cfg), str(tmp_path))
    (res,) = list(task.resources)
    assert res.region == "us-east-1"
    summary = dict(launch.task_summary(task))
    assert list(summary) == ["resources", "workdir", "env", "mounts", "setup", "run"]
    assert summary["resources"] == (
        "1 node(s): AWS H100:8 us-east-1 spot recovery EAGER_NEXT_REGION"
    )
    assert summary["mounts"].splitlines() == [
        f"{launch.REMOTE_CONFIG} ← {cfg}",
        f"{launch.CHECKPOINTS} ← bucket nanochat-d20-test (mount_cached)",
    ]
    assert summary["setup"] == task.setup and summary["run"] == task.run
    assert "WANDB_MODE=offline" in summary["env"]
    est = launch.cost_table(load_config("hundred", []), spec, local_price)
    assert dict((r.label, r.value) for r in est.rows)["hardware"] == (
        "1× H100:8 on aws us-east-1 (spot)"
    )


def test_cost_table_for_hundred() -> None:
    config = load_config("hundred", [])
    est = launch.cost_table(config, _spec(cloud="aws", accelerator="H100:8"), local_price)
    from nanochat_tui.config.estimates import flops_per_token, total_tokens

    flops = flops_per_token(config.model) * total_tokens(config)
    assert est.devices == 8 and est.flops == flops
    assert est.hours == pytest.approx(flops / (989e12 * 8 * launch.LAUNCH_MFU) / 3600)
    assert est.price_per_hour == 98.32 and est.cost == pytest.approx(est.hours * 98.32)
    rows = dict((r.label, r.value) for r in est.rows)
    assert rows["devices"] == "8 (mesh 8×1, accum 1)" and rows["MFU (assumed)"] == "40%"
    assert rows["price"].startswith("$98.32/h")
    spot = launch.cost_table(
        config, _spec(cloud="aws", accelerator="H100:8", spot=True), local_price
    )
    assert spot.cost < est.cost
    with pytest.raises(
        UserError, match=r"train\.total_batch_size"
    ):  # tiny's batch cannot split 8 ways
        launch.cost_table(
            load_config("tiny", []), _spec(cloud="aws", accelerator="H100:8"), local_price
        )


def test_catalog_price_reads_skypilot_catalog_functions(monkeypatch) -> None:
    from sky.clouds import service_catalog as catalog

    hosts = {("H100", 8, "aws"): ["p5.48xlarge"]}
    hourly = {("p5.48xlarge", False): 98.32}
    monkeypatch.setattr(
        catalog,
        "get_instance_type_for_accelerator",
        lambda name, count, use_spot=False, clouds=None, **_: (
            hosts.get((name, count, clouds)),
            ["H100:4"],
        ),
    )
    monkeypatch.setattr(
        catalog, "get_hourly_cost", lambda t, spot, region, zone, clouds=None: hourly[(t, spot)]
    )
    acc = launch.parse_accelerator("H100:8")
    assert launch.catalog_price("aws", acc, False) == 98.32
    with pytest.raises(UserError, match="offers no B200:8"):
        launch.catalog_price("aws", launch.parse_accelerator("B200:8"), False)


@pytest.mark.parametrize(
    ("error", "enabled", "message", "fix"),
    [
        (
            lambda: sky.exceptions.NoCloudAccessError("AWS credentials not found"),
            ["aws"],
            "no usable credentials for aws",
            "sky check aws",
        ),
        (
            lambda: sky.exceptions.ResourcesUnavailableError(
                "Quota exceeded for H100 in us-east-1"
            ),
            ["aws", "gcp"],
            "no quota for H100:8 on aws",
            "quota increase",
        ),
        (
            lambda: sky.exceptions.ResourcesUnavailableError(
                "Failed to acquire resources in all zones"
            ),
            ["aws"],
            "no capacity for H100:8 on aws",
            "retry later",
        ),
        (  # what sky.jobs.launch raises when no cloud (so no bucket store) is enabled
            lambda: sky.exceptions.NotSupportedError(
                "Cloud-based file_mounts are specified, but no cloud storage is available."
            ),
            [],
            "aws is not enabled in SkyPilot (enabled clouds: none)",
            "sky check aws",
        ),
        (  # the optimizer's answer for a cloud that is not enabled while others are
            lambda: sky.exceptions.ResourcesUnavailableError("No launchable resource found"),
            ["gcp", "kubernetes"],
            "aws is not enabled in SkyPilot (enabled clouds: gcp, kubernetes)",
            "sky check aws",
        ),
        (
            lambda: sky.exceptions.NotSupportedError("no cloud storage is available"),
            ["aws"],
            "no cloud storage on aws for the checkpoint bucket",
            "storage access",
        ),
    ],
)
def test_cloud_errors_are_explained(error, enabled, message, fix) -> None:
    spec = _spec(cloud="aws", accelerator="H100:8")

    def submit(task, name):
        raise error()

    with pytest.raises(UserError) as err:
        launch.launch(spec, object(), submit=submit, enabled=lambda: enabled)
    assert message in err.value.message and fix in err.value.remediation
    assert "\x1b" not in str(err.value)


def test_an_error_that_is_not_a_cloud_failure_is_not_explained() -> None:
    asked: list[bool] = []
    spec = _spec(cloud="aws", accelerator="H100:8")
    assert launch.explain_cloud_error(ValueError("x"), spec, lambda: asked.append(True)) is None
    assert not asked  # no round trip to SkyPilot's API server for it


def test_without_skypilot_says_how_to_install(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "sky", None)  # an import of sky now fails as if absent
    with pytest.raises(UserError) as err:
        launch.require_sky()
    assert "uv sync --extra cloud" in err.value.remediation


def test_cli_without_network_for_the_catalog_says_so_in_one_line(tmp_path) -> None:
    """The price comes from SkyPilot's catalog, downloaded on first use. With no way out (a
    proxy that refuses every connection stands in for no network, here and on machines that have
    one), the CLI prints one error and its remediation: none of SkyPilot's ``<sky-payload>``
    spinner lines or its own log lines, no crash dump."""
    import socket
    import subprocess
    import sys

    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
        env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
        for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
            env[name] = proxy
        env.update(HOME=str(tmp_path), SKYPILOT_DISABLE_USAGE_COLLECTION="1")
        argv = ["launch", "hundred", "--cloud", "aws", "--accelerator", "H100:8", "--dry-run"]
        done = subprocess.run(
            [sys.executable, "-m", "nanochat_tui.cli", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert out.splitlines()[-2:] == [
        "error: SkyPilot could not download its aws catalog for the price (ProxyError; no network?)",
        "  → connect to the internet and try again; SkyPilot keeps the catalog in ~/.sky/catalogs "
        "and refreshes it every few hours",
    ]
    for noise in ("<sky-payload", "aws/vms.csv", "Traceback", "crash dump"):
        assert noise not in out, out
    assert not list(tmp_path.rglob("crash-*"))
