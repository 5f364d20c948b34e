"""Shared by the launch tests: a local price table in place of SkyPilot's catalog, the rule for
tests that need SkyPilot itself (skip with the reason; fail under NANOCHAT_TUI_REQUIRE_CLOUD=1,
which .ci/run sets after installing the `cloud` extra), and SkyPilot's real API server run in a
throw-away home with the same table as its catalog files."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from nanochat_tui.errors import UserError
from nanochat_tui.orchestrator import launch

# $/h per node: (cloud, accelerator spec, spot) -> price; what the catalog functions return here
TABLE = {
    ("gcp", "tpu-v6e-8:1", False): 21.60,
    ("aws", "H100:8", False): 98.32,
    ("aws", "H100:8", True): 39.33,
    ("aws", "H100:4", False): 49.16,
}


def local_price(cloud: str, acc: launch.Accelerator, spot: bool, region: str = "") -> float:
    """The catalog lookup on TABLE; a missing row is the catalog's own UserError."""
    try:
        return TABLE[(cloud, acc.spec, spot)]
    except KeyError:
        raise UserError(f"{cloud} offers no {acc.spec} in this test's table") from None


def require_sky() -> None:
    """Skip (with the reason) when SkyPilot is not installed; fail instead in CI."""
    if importlib.util.find_spec("sky") is not None:
        return
    why = "needs SkyPilot: the `cloud` extra (`uv run --extra cloud pytest`; .ci/run installs it)"
    if os.environ.get("NANOCHAT_TUI_REQUIRE_CLOUD") == "1":
        pytest.fail(why, pytrace=False)
    pytest.skip(why, allow_module_level=True)


def seed_catalog(home: Path) -> None:
    """SkyPilot's catalog files in ``home``/.sky for the aws rows of TABLE: what SkyPilot would
    download (no network in tests). With no md5 file beside them SkyPilot takes them for the
    user's own and never refreshes them."""
    root = home / ".sky" / "catalogs" / "v6"
    (root / "common").mkdir(parents=True, exist_ok=True)
    (root / "aws").mkdir(parents=True, exist_ok=True)
    (root / "common" / "accelerators.csv").write_text('AcceleratorName,Clouds\nH100,"AWS, GCP"\n')
    header = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone"
    rows = [
        f"p5.{n * 12}xlarge,H100,{n}.0,{n * 24}.0,{n * 256}.0,,"
        f"{TABLE[('aws', f'H100:{n}', False)]},{TABLE.get(('aws', f'H100:{n}', True), '')},"
        "us-east-1,use1-az1"
        for n in (4, 8)
    ]
    (root / "aws" / "vms.csv").write_text("\n".join([header, *rows]) + "\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_processes(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (zombies count as gone)."""
    import psutil

    alive = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


@contextmanager
def api_server(home: Path) -> Iterator[tuple[dict[str, str], int]]:
    """SkyPilot's real API server (``python -m sky.server.server``, what ``sky api start`` runs)
    on a free 127.0.0.1 port, with ``home`` as HOME (its state, logs, catalog), outgoing
    connections refused through a proxy that never answers (no cloud, no network), and the
    environment a client needs to reach it, with the server's process group. The whole group is
    ended on exit."""
    seed_catalog(home)
    port = free_port()
    with socket.socket() as refused:  # bound, never listening: the "proxy" refuses everything
        refused.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{refused.getsockname()[1]}"
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
            env[name] = proxy
        env.update(
            HOME=str(home),
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
            SKYPILOT_API_SERVER_ENDPOINT=f"http://127.0.0.1:{port}",
            SKYPILOT_DISABLE_USAGE_COLLECTION="1",
        )
        log = (home / "api-server.log").open("wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "sky.server.server", "--host=127.0.0.1", f"--port={port}"],
            env={**env, "IS_SKYPILOT_SERVER": "true"},  # as `sky api start` sets it
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_healthy(port, server, home / "api-server.log")
            yield env, server.pid
        finally:
            stop_group(server)
            log.close()


def wait_healthy(port: int, server: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"SkyPilot's API server exited:\n{log.read_text()[-3000:]}")
        try:
            reply = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2, trust_env=False)
            if reply.status_code == 200 and reply.json().get("status") == "healthy":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(
        f"SkyPilot's API server not healthy in {timeout}s:\n{log.read_text()[-3000:]}"
    )


def stop_group(server: subprocess.Popen) -> None:
    """End the server's process group (it, its request workers, multiprocessing's tracker):
    SIGTERM, then SIGKILL for what is left after 5 s (the tracker ignores SIGTERM)."""
    pgid = server.pid
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while group_processes(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not group_processes(pgid):
            break
    server.wait(timeout=10)
