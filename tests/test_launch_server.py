"""``nanochat-tui launch`` against SkyPilot's real API server (started on 127.0.0.1 in a throw-away
home; no cloud credentials, no network, SkyPilot's catalog files written from the tests' price
table): a dry run (``sky.launch(dryrun=True)``) and a managed-job submission (``sky.jobs.launch``)
each reach the server and end in one readable error that names the enabled clouds (none) and
``sky check``, with no crash dump. The server's process group is ended at the end.

Before the `cloud` extra pinned FastAPI below 0.145 the server died at start-up
(``FastAPI.__init__() got an unexpected keyword argument 'prefix'``), and the managed job's
``NotSupportedError`` (no cloud storage for the bucket) ended in a crash dump."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from launch_fixtures import api_server, group_processes, require_sky

require_sky()

pytestmark = pytest.mark.slow

NOT_ENABLED = [
    "error: aws is not enabled in SkyPilot (enabled clouds: none)",
    "  → set up aws credentials, then run `sky check aws` (it says what is missing)",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("sky-home")
    with api_server(home) as (env, pgid):
        yield home, env
    assert not group_processes(pgid), "the API server's processes outlived the tests"


LAUNCH = ["launch", "hundred", "--cloud", "aws", "--accelerator", "H100:8"]


def cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "nanochat_tui.cli", *LAUNCH, *args],
        env={**env, "NANOCHAT_TUI_HOME": str(Path(env["HOME"]) / "nanochat")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=420,
    )
    return done.returncode, done.stdout + done.stderr


def requests_seen(home: Path) -> str:
    return (home / "api-server.log").read_text(errors="replace")


def assert_one_readable_error(out: str, home: Path) -> None:
    assert out.splitlines()[-2:] == NOT_ENABLED, out
    for noise in ("Traceback", "crash dump", "<sky-payload", "NotSupportedError"):
        assert noise not in out, out
    assert not list(home.rglob("crash-*"))


def test_dry_run_reaches_the_real_api_server(server) -> None:
    home, env = server
    code, out = cli(env, "--name", "d20", "--dry-run")
    assert code == 2, out
    assert "$98.32/h (SkyPilot catalog)" in out  # the table, from SkyPilot's catalog functions
    assert "SkyPilot dry run (nothing is launched)" in out
    assert '"POST /launch HTTP/1.1" 200' in requests_seen(home)  # sky.launch(dryrun=True)
    assert_one_readable_error(out, home)


def test_managed_job_without_credentials_is_one_line(server) -> None:
    home, env = server
    code, out = cli(env, "--name", "d20-job", "--yes")
    assert code == 2, out
    assert '"POST /jobs/launch HTTP/1.1" 200' in requests_seen(home)
    assert_one_readable_error(out, home)
