"""The Serve screen: opened from the palette, it starts a real server process for a checkpoint,
shows its live numbers after a real client request, reports a bad checkpoint, and stops it."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import openai
import pytest

from helpers import tiny
from nanochat_tui.tui.app import NanochatApp
from nanochat_tui.tui.screens.serve import ServeScreen

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    from nanochat_tui.config import load_config
    from nanochat_tui.jax_engine.train import train

    home = tmp_path_factory.mktemp("serve-tui-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(home))
        config = load_config("tiny", tiny({"train.num_iterations": 5, "run.name": "tuiserve"}))
        run_dir = home / "runs" / "tuiserve"
        assert train(config, run_dir, lambda event: None).status == "finished"
    return run_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for(pilot, screen_text, app, needle: str, timeout: float = 240.0) -> str:
    for _ in range(int(timeout / 0.25)):
        await pilot.pause()
        text = screen_text(app)
        if needle in text:
            return text
        await asyncio.sleep(0.25)
    raise AssertionError(f"{needle!r} not on screen:\n{screen_text(app)}")


async def test_serve_screen_starts_watches_and_stops(trained_run, tmp_path, screen_text, type_into):
    app = NanochatApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"serve")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ServeScreen)

        await type_into(pilot, "#serve-path", str(tmp_path))
        await pilot.click("#serve-start")
        await wait_for(pilot, screen_text, app, "no checkpoint found")
        assert screen.server is None

        port = free_port()
        await type_into(pilot, "#serve-path", str(trained_run))
        await type_into(pilot, "#serve-port", str(port))
        await pilot.click("#serve-start")
        await wait_for(pilot, screen_text, app, f"127.0.0.1:{port}/v1")
        client = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0
        )
        async with client:
            reply = await client.chat.completions.create(
                model="tuiserve",
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=5,
                temperature=0,
            )
        assert reply.usage.completion_tokens >= 1
        text = await wait_for(pilot, screen_text, app, "1 requests")
        assert "tokens/s" in text and "latency p99" in text and "active slots" in text

        await pilot.press("escape")  # closing the screen keeps the server
        await pilot.pause()
        assert screen.server is not None and screen.server.alive()
        app.action_serve()
        await pilot.pause()
        assert app.screen is screen
        process = screen.server
        await pilot.click("#serve-stop")
        await pilot.pause()
        assert not process.alive()
        assert "stopped" in screen_text(app)
