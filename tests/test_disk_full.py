"""A disk that fills up during a checkpoint save: reported as a full disk (how much to free,
where), naming the newest intact checkpoint, the unfinished temporary directory removed, and no
stray traceback. Once through a fault-injecting writer (everywhere), once on a real, small tmpfs
(where this process may mount one)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import tiny_overrides
from nanochat_tui import rundir
from nanochat_tui.errors import is_disk_full

# What tensorstore raises through orbax when a write finds the disk full (copied from a run on a
# 3 MB tmpfs).
ENOSPC_TEXT = (
    'RESOURCE_EXHAUSTED: Error writing "model.blocks.0.attn.c_k.kernel.value/0.0" in OCDBT '
    'database at local file "{dir}/state.orbax-checkpoint-tmp/ocdbt.process_0/": Failed '
    'writing: "{dir}/state.orbax-checkpoint-tmp/ocdbt.process_0/d/e6d6c7": Failed to write '
    "79420 bytes to file 16: No space left on device [os_error_code='28']"
)


def test_disk_full_is_told_apart_from_device_memory() -> None:
    assert is_disk_full(ValueError(ENOSPC_TEXT.format(dir="/x")))
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    try:
        try:
            raise OSError(errno.ENOSPC, "nope")
        except OSError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as outer:
        assert is_disk_full(outer)
    assert not is_disk_full(
        RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 81.00GiB.")
    )


def _assert_reported(run_dir: Path, error: dict, newest: int) -> None:
    ckpts = run_dir / "checkpoints"
    assert error["kind"] == "disk_full", error
    assert error["message"].startswith("disk full: checkpoint "), error
    assert "out of device memory" not in error["message"]
    assert error["last_checkpoint"] == str(ckpts / str(newest))
    assert f"newest intact checkpoint: {ckpts / str(newest)}" in error["message"]
    assert f"MB in {ckpts.resolve()}" in error["remediation"]
    assert f"nanochat-tui run --resume {run_dir.resolve()}" in error["remediation"]
    assert "device_batch_size" not in error["remediation"]
    assert not list(ckpts.glob("*.orbax-checkpoint-tmp*")), list(ckpts.iterdir())


# The real CLI in its own process, so stderr is what a user's terminal shows (pytest replaces the
# hook that prints unraisable exceptions), with one fault: orbax's array writer raises
# tensorstore's ENOSPC error for step 6's save, in its background thread as on a full disk, while
# a real write of the same array is still in flight (a full disk fails one write of many): that
# write then finishes on an event loop orbax has closed.
INJECT = """
import asyncio, json, sys
from nanochat_tui import cli, logging_setup
from nanochat_tui.exiting import leave
logging_setup.setup_logging()  # as main() does before anything imports orbax (and absl)
from orbax.checkpoint._src.serialization import serialization

real = serialization.async_serialize_from_host

async def full_disk(rslices, spec, *args, **kwargs):
    if "/6.orbax-checkpoint-tmp" in json.dumps(spec, default=str):
        asyncio.ensure_future(real(rslices, spec, *args, **kwargs))
        await asyncio.sleep(0)
        raise ValueError(sys.argv[1])
    return await real(rslices, spec, *args, **kwargs)

serialization.async_serialize_from_host = full_disk
leave(cli.main(sys.argv[2:]))  # as the console script does, less the allocator's re-exec
"""


def _run_cli(runs: Path, *prefix: str, iterations: int) -> subprocess.CompletedProcess:
    """``nanochat-tui run tiny --name full`` (tiny, a save every 2 steps, 3 kept) into ``runs``."""
    sets = tiny_overrides(
        {"train.num_iterations": iterations, "train.save_every": 2, "train.keep_checkpoints": 3}
    )
    argv = [*prefix, "run", "tiny", "--name", "full", "--quiet"]
    for item in sets:
        argv += ["--set", item]
    env = {**os.environ, "NANOCHAT_TUI_RUNS": str(runs)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)


def _assert_cli_reported(proc: subprocess.CompletedProcess, run_dir: Path) -> dict:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    (error,) = [e for e in events if e["type"] == "error"]
    newest = rundir.latest_checkpoint(run_dir)
    assert newest is not None, error
    _assert_reported(run_dir, error, newest=newest.step)
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "failed"
    assert proc.stderr.startswith("error: disk full: checkpoint "), proc.stderr
    for noise in ("Traceback", "Event loop is closed", "out of device memory"):
        assert noise not in proc.stderr, proc.stderr[-3000:]
    return error


def test_a_save_that_finds_the_disk_full(tmp_path) -> None:
    """Step 6's save finds the disk full: the run fails as disk full and names checkpoint 4."""
    run_dir = tmp_path / "full"
    text = ENOSPC_TEXT.format(dir=str(run_dir / "checkpoints/6.orbax-checkpoint-tmp"))
    proc = _run_cli(tmp_path, sys.executable, "-c", INJECT, text, iterations=10)
    error = _assert_cli_reported(proc, run_dir)
    assert error["message"].startswith("disk full: checkpoint 6 ")
    assert [c.step for c in rundir.list_checkpoints(run_dir)] == [2, 4]


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 3 MB tmpfs (room for about three tiny checkpoints); skipped where mounting is refused."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_the_cli_on_a_full_tmpfs(small_tmpfs) -> None:
    """The real thing: `nanochat-tui run` into a 3 MB tmpfs fills it up; one readable error, the
    newest intact checkpoint named, the temporary directory gone, nothing else on stderr."""
    proc = _run_cli(small_tmpfs, sys.executable, "-m", "nanochat_tui.cli", iterations=16)
    _assert_cli_reported(proc, small_tmpfs / "full")
