"""``nanochat-tui web``: a real textual-serve server on 127.0.0.1 serves the page, and a browser
session (its websocket) starts the TUI, whose first frame arrives over the socket."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

import aiohttp
import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_web_serves_the_tui_to_a_browser_session():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nanochat_tui.cli", "web", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "web server did not start"
                time.sleep(0.2)
        assert page.status_code == 200 and "nanochat-tui" in page.text

        async def first_frame() -> str:
            url = f"ws://127.0.0.1:{port}/ws?width=100&height=30"
            received = ""
            async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
                end = time.monotonic() + 180
                while "Transformer layers" not in received and time.monotonic() < end:
                    msg = await ws.receive(timeout=180)
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        received += msg.data.decode("utf-8", "replace")
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        received += msg.data
                    else:
                        break
            return received

        assert "Transformer layers" in asyncio.run(first_frame())  # the Config pane, first frame
    finally:
        proc.terminate()
        proc.wait(timeout=20)
