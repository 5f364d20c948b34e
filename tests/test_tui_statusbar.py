"""Status row: W&B state from the config, device and W&B kept whole at 80 columns."""

from __future__ import annotations

import pytest

from nanochat_tui.tui.app import NanochatApp


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def _status(pilot, app) -> str:
    await pilot.pause()
    app.status_bar.refresh_status()
    await pilot.pause()
    return str(app.status_bar.render())


@pytest.mark.anyio
async def test_wandb_off_in_config_shows_off():
    app = NanochatApp(prefab="tiny", overrides=["telemetry.wandb.enabled=false"])
    async with app.run_test(size=(160, 48)) as pilot:
        text = await _status(pilot, app)
        assert "W&B off" in text and "file·auto" not in text


@pytest.mark.anyio
async def test_80_columns_keep_device_and_wandb():
    app = NanochatApp(
        prefab="tiny",
        overrides=["telemetry.wandb.enabled=true", "run.name=a-very-long-run-name-indeed-xyz"],
    )
    async with app.run_test(size=(80, 24)) as pilot:
        app.state.device = {"platform": "cpu", "device_kind": "cpu", "count": 1}
        app.state.overrides = {f"k{i}": i for i in range(12)}

        class LongRun:
            name = "a-very-long-run-name-for-a-week-long-pretraining-job"

            def status(self) -> str:
                return "running"

        app.state.run = LongRun()
        text = await _status(pilot, app)
        assert len(text.rstrip()) <= 80
        assert "dev cpu" in text and text.rstrip().endswith("W&B none·offline")
        assert "a-very-long" in text and "…" in text


@pytest.mark.anyio
async def test_quit_dialog_lines_fit_80_columns(screen_text):
    from nanochat_tui.tui.screens.quit import QuitScreen

    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.push_screen(QuitScreen("a-week-long-run"))
        await pilot.pause()
        text = screen_text(app)
        for line in (
            "s  stop it gracefully: checkpoint now, status 'stopped'",
            "b  move it to the background: a detached process resumes",
            "from a fresh checkpoint and keeps training",
            "Cancel (c)",
            "Background (b)",
            "Stop (s)",
        ):
            assert line in text, line
