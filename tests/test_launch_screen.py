"""The Launch screen: opened from the Config pane (ctrl+l) and the palette; the cost table follows
the fields; the task summary is read from the built SkyPilot Task; confirm → submit → status lines;
the no-SkyPilot message and the three cloud errors through orchestrator/launch.py, the functions
the CLI tests use. Prices come from a local table; no test reaches a cloud."""

from __future__ import annotations

import subprocess
import sys

import pytest
from textual.app import App
from textual.widgets import Button, RichLog

from helpers import pilot_wait_for
from launch_fixtures import local_price, require_sky
from nanochat_tui.config import load_config
from nanochat_tui.orchestrator import launch
from nanochat_tui.tui.screens.launch import LaunchScreen, display_path_in

pytestmark = pytest.mark.anyio
SIZES = [(80, 24), (160, 48)]
WORKDIR = "/src/nanochat-tui"  # a fixed checkout path keeps the snapshots the same everywhere


@pytest.fixture
def anyio_backend():
    return "asyncio"


class LaunchHost(App):
    """The Launch screen over an empty app, on the hundred prefab."""

    def __init__(self, **seams) -> None:
        super().__init__()
        self.seams = seams
        self.screen_under_test: LaunchScreen | None = None

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        self.screen_under_test = LaunchScreen(
            load_config("hundred", []),
            "hundred",
            name="d20-test",
            workdir=WORKDIR,
            price_lookup=local_price,
            **self.seams,
        )
        self.push_screen(self.screen_under_test)


async def built(pilot, screen: LaunchScreen, count: int = 1) -> None:
    """Wait for ``count`` plan builds (the first imports SkyPilot: seconds)."""
    await pilot_wait_for(pilot, lambda: screen.builds >= count, what="the launch plan")
    await pilot.pause()


async def test_opened_from_the_config_pane_and_the_palette(monkeypatch, screen_text) -> None:
    require_sky()
    from nanochat_tui.tui.app import NanochatApp
    from nanochat_tui.tui.commands import collect_commands

    monkeypatch.setattr(launch, "catalog_price", local_price)
    app = NanochatApp(prefab="hundred")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot_wait_for(pilot, lambda: app.started, what="app start")
        await app.action_switch_pane("config")
        await pilot.pause()
        await pilot.press("ctrl+l")
        await pilot_wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen), what="Launch")
        screen = app.screen
        assert screen.prefab == "hundred" and screen.config == app.state.config
        await built(pilot, screen)
        text = screen_text(app)
        assert "$98.32/h (SkyPilot catalog)" in text and "est. cost" in text
        checkout = display_path_in(launch.project_root(launch.__file__))  # ~ for the home folder
        assert f"{checkout} (synced to every node)" in text
        await pilot.press("escape")
        await pilot_wait_for(pilot, lambda: not isinstance(app.screen, LaunchScreen), what="close")
        (command,) = [c for c in collect_commands(app) if c[0] == "Launch on a cloud…"]
        command[2]()
        await pilot_wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen), what="reopen")
        help_ids = {spec.id for spec, _key in app.key_rows()}
        assert "config.launch" in help_ids  # the pane key table lists it, so help shows it


async def test_accelerator_change_updates_the_table_and_the_task(screen_text, type_into) -> None:
    require_sky()
    app = LaunchHost()
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.screen_under_test
        await built(pilot, screen)
        rows = {r.label: r.value for r in screen.plan.estimate.rows}
        assert rows["price"].startswith("$98.32/h") and rows["devices"].startswith("8 (mesh 8×1")
        assert "$98.32/h" in screen_text(app)
        await type_into(pilot, "#launch-accelerator", "H100:4")
        await pilot_wait_for(
            pilot,
            lambda: screen.plan.spec.accelerator == "H100:4" and screen.plan.error is None,
            what="the H100:4 plan",
        )
        await pilot.pause()
        rows = {r.label: r.value for r in screen.plan.estimate.rows}
        assert rows["price"].startswith("$49.16/h")
        assert rows["devices"] == "4 (mesh 4×1, accum 2)"
        eight_hours = launch.cost_table(
            load_config("hundred", []),
            launch.LaunchSpec("hundred", "aws", "H100:8", name="d20-test"),
            local_price,
        ).hours
        assert screen.plan.estimate.hours == pytest.approx(2 * eight_hours)
        text = screen_text(app)
        assert "$49.16/h" in text and "$98.32/h" not in text
        # the task view: read back from the built Task, which now asks for four H100s
        summary = dict(screen.plan.summary)
        assert summary["resources"].startswith("1 node(s): AWS H100:4")
        assert summary["run"] == screen.plan.task.run
        for part in ("AWS H100:4", "uv sync --extra cuda", "nanochat-tui run", "/checkpoints"):
            assert part in text, part
        assert not screen.query_one("#launch-go", Button).disabled


async def test_without_skypilot_the_screen_says_how_to_install(monkeypatch, screen_text) -> None:
    monkeypatch.setitem(sys.modules, "sky", None)  # an import of sky now fails as if absent
    app = LaunchHost()
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.screen_under_test
        await built(pilot, screen)
        text = screen_text(app)
        assert "SkyPilot is not installed" in text and "uv sync --extra cloud" in text
        assert screen.query_one("#launch-go", Button).disabled


async def test_an_unexpected_planning_error_is_one_message(screen_text) -> None:
    require_sky()

    def broken_catalog(cloud, acc, spot, region=""):
        raise ValueError("Invalid region 'mars-1' for AWS\nmore detail")

    app = LaunchHost()
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.screen_under_test
        await built(pilot, screen)
        screen.price_lookup = broken_catalog
        screen.rebuild()
        await built(pilot, screen, 2)
        text = screen_text(app)
        assert "cannot plan this launch: ValueError: Invalid region 'mars-1' for AWS" in text
        assert "more detail" not in text and "sky show-gpus" in text
        assert screen.query_one("#launch-go", Button).disabled


def cloud_errors() -> dict:
    """Each error path: (what SkyPilot raises, the message, the remediation's key words)."""
    import sky

    unavailable = sky.exceptions.ResourcesUnavailableError
    return {
        "credentials": (
            sky.exceptions.NoCloudAccessError("AWS credentials not found"),
            "no usable credentials for aws",
            "sky check aws",
        ),
        "quota": (
            unavailable("Quota exceeded for H100 in us-east-1"),
            "no quota for H100:8 on aws",
            "quota increase",
        ),
        "capacity": (
            unavailable("Failed to acquire resources in all zones"),
            "no capacity for H100:8 on aws",
            "retry later",
        ),
    }


@pytest.mark.parametrize("which", ["credentials", "quota", "capacity"])
async def test_cloud_errors_show_one_message(which, screen_text) -> None:
    require_sky()
    error, message, fix = cloud_errors()[which]
    submitted: list[str] = []

    def submit(task, name):
        submitted.append(name)
        raise error

    app = LaunchHost(submit=submit, enabled=lambda: ["aws"])
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.screen_under_test
        await built(pilot, screen)
        await pilot.click("#launch-go")
        await pilot.pause()
        await pilot.press("y")
        await pilot_wait_for(pilot, lambda: not screen.launched and submitted, what="failure")
        await pilot.pause()
        text = screen_text(app)
        assert message in text and fix in text
        assert text.count(message) == 2  # the message line and the status line, nothing else
        assert submitted == ["d20-test"]
        assert not screen.query_one("#launch-go", Button).disabled  # fix and try again


async def test_confirm_then_launch_streams_status_lines(screen_text) -> None:
    require_sky()
    submitted: list = []

    def submit(task, name):
        submitted.append((task, name))
        return 7

    def follow(name, out):
        for line in ("PENDING", "STARTING"):
            out.write(f"{name}: {line}\n")
        out.write(f"{name}: RUNNING step 1/")  # a line in two writes is still one line
        out.write("21000\n")
        out.write(f"{name}: SUCCEEDED")  # the last line without its newline
        return 0

    app = LaunchHost(submit=submit, follow=follow)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.screen_under_test
        await built(pilot, screen)
        await pilot.click("#launch-go")
        await pilot.pause()
        await pilot.press("n")  # not confirmed: nothing is submitted
        await pilot.pause()
        assert not submitted and not screen.launched
        await pilot.click("#launch-go")
        await pilot.pause()
        await pilot.press("y")
        await pilot_wait_for(pilot, lambda: "ended (exit code 0)" in screen_text(app), what="end")
        ((task, name),) = submitted
        assert task is screen.plan.task and name == "d20-test"
        log = "\n".join(strip.text for strip in screen.query_one("#launch-log", RichLog).lines)
        for line in ("submitted: 7", "d20-test: RUNNING step 1/21000", "d20-test: SUCCEEDED"):
            assert f"{line}\n" in log, line
        assert screen.query_one("#launch-accelerator").disabled  # the launched plan is fixed


def test_the_screen_module_imports_neither_skypilot_nor_jax() -> None:
    code = (
        "import sys\n"
        "import nanochat_tui.tui.screens.launch, nanochat_tui.tui.app\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sky', 'jax', 'flax'))\n"
        "print(','.join(bad)); sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"imported at load: {proc.stdout.strip()} {proc.stderr[-2000:]}"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_launch_screen_snapshot(snap_compare, size) -> None:
    require_sky()
    app = LaunchHost()

    async def ready(pilot) -> None:
        await pilot_wait_for(pilot, lambda: app.screen_under_test.builds >= 1, what="the plan")
        await pilot.pause()

    assert snap_compare(app, run_before=ready, terminal_size=size)
