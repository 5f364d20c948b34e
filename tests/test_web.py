"""``nanochat-tui web``: a real textual-serve server on 127.0.0.1, driven by a real HTTP and
websocket client (aiohttp). Only the holder of the start token, from the page's own origin and a
local Host name, gets a page or a TUI session; every refusal is a 403 that starts no process."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
import pytest

TOKEN_ENV = "NANOCHAT_TUI_WEB_TEST_TOKEN"
TOKEN = "test-token-5Qm8Zr2x"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class WebServer:
    proc: subprocess.Popen
    port: int
    output: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def children(self) -> set[int]:
        """Every process the server has started (each TUI session is one) and is still running."""
        return {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}

    def text(self) -> str:
        return self.output.read_text(errors="replace")


def start_web(home: Path, *args: str, env: dict[str, str] | None = None) -> WebServer:
    """``nanochat-tui web`` on a free port, its stdout and stderr in ``home/web.out``."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    output = home / "web.out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nanochat_tui.cli", "web", "--port", str(port), *args],
        stdout=output.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "NANOCHAT_TUI_HOME": str(home), **(env or {})},
    )
    server = WebServer(proc, port, output)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, server.text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            assert time.monotonic() < deadline, "web server did not start"
            time.sleep(0.2)


def stop_web(server: WebServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=20)


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Iterator[WebServer]:
    """One server for the access checks: token from the environment, one extra Host allowed."""
    server = start_web(
        tmp_path_factory.mktemp("web"),
        *("--token-env", TOKEN_ENV, "--allow-host", "tunnel.example"),
        env={TOKEN_ENV: TOKEN},
    )
    yield server
    stop_web(server)


async def ws_status(url: str, **kwargs) -> int:
    """The HTTP status of a websocket handshake (101 when a session was opened)."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, **kwargs):
                return 101
        except aiohttp.WSServerHandshakeError as err:
            return err.status


async def get(url: str, **kwargs) -> tuple[int, str, aiohttp.ClientResponse]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as response:
        return response.status, await response.text(), response


def assert_starts_no_process(server: WebServer, before: set[int]) -> None:
    """A session would have spawned its TUI by the time the handshake answered; wait a little
    longer anyway, then check nothing new runs under the server."""
    time.sleep(0.5)
    assert server.children() - before == set()


def test_a_missing_or_wrong_token_is_refused_and_starts_no_process(web: WebServer):
    before = web.children()
    origin = {"Origin": web.base}
    ws = f"ws://127.0.0.1:{web.port}/ws?width=80&height=24"
    assert asyncio.run(ws_status(ws, headers=origin)) == 403
    assert asyncio.run(ws_status(ws + "&token=wrong", headers=origin)) == 403
    assert asyncio.run(ws_status(ws + f"&token={TOKEN}x", headers=origin)) == 403
    bad_cookie = {**origin, "Cookie": f"nanochat-tui-web-{web.port}=wrong"}
    assert asyncio.run(ws_status(ws, headers=bad_cookie)) == 403
    cookie_for_another_port = {**origin, "Cookie": f"nanochat-tui-web-{web.port + 1}={TOKEN}"}
    assert asyncio.run(ws_status(ws, headers=cookie_for_another_port)) == 403
    for page in ("/", "/?token=wrong", "/download/anything", "/%1b%5b2J"):
        status, body, _ = asyncio.run(get(web.base + page, allow_redirects=False))
        assert status == 403
        assert body.count("\n") == 1 and "token" in body and "nanochat-tui web" in body
    assert_starts_no_process(web, before)
    assert "'/\\x1b[2J'" in web.text() and "\x1b" not in web.text()  # no terminal escapes


def test_a_foreign_origin_is_refused_and_starts_no_process(web: WebServer):
    before = web.children()
    ws = f"ws://127.0.0.1:{web.port}/ws?token={TOKEN}"
    for origin in ("http://evil.example", f"http://127.0.0.1:{web.port + 1}", "null"):
        assert asyncio.run(ws_status(ws, headers={"Origin": origin})) == 403, origin
    status, body, _ = asyncio.run(get(ws.replace("ws:", "http:"), headers={"Origin": "null"}))
    assert status == 403 and body.count("\n") == 1 and "'null'" in body
    assert_starts_no_process(web, before)
    refusals = [line for line in web.text().splitlines() if "http://evil.example" in line]
    assert refusals and all(TOKEN not in line for line in refusals)


def test_a_foreign_host_is_refused_and_starts_no_process(web: WebServer):
    """DNS rebinding: evil.example resolves to 127.0.0.1, so the browser sends its own Host."""
    before = web.children()
    evil = f"evil.example:{web.port}"
    rebound = {"Host": evil, "Origin": f"http://{evil}"}
    ws = f"ws://127.0.0.1:{web.port}/ws?token={TOKEN}"
    assert asyncio.run(ws_status(ws, headers=rebound)) == 403
    for path in (f"/?token={TOKEN}", "/static/js/textual.js"):
        status, body, _ = asyncio.run(get(web.base + path, headers={"Host": evil}))
        assert status == 403 and body.count("\n") == 1 and "--allow-host" in body
    status, _, _ = asyncio.run(get(web.base + "/", headers={"Host": "localhost:1@evil.example"}))
    assert status == 403
    assert_starts_no_process(web, before)


def test_the_token_url_sets_a_cookie_and_the_page_connects_where_it_was_opened(web: WebServer):
    for host in (f"localhost:{web.port}", f"[::1]:{web.port}", f"tunnel.example:{web.port}"):
        status, _, response = asyncio.run(
            get(
                f"{web.base}/?token={TOKEN}&fontsize=14",
                headers={"Host": host},
                allow_redirects=False,
            )
        )
        assert status == 302 and response.headers["Location"] == "/?fontsize=14"
        cookie = response.cookies[f"nanochat-tui-web-{web.port}"]
        assert cookie.value == TOKEN and cookie["httponly"] and cookie["samesite"] == "Lax"
        cookies = {"Cookie": f"nanochat-tui-web-{web.port}={TOKEN}", "Host": host}
        status, page, response = asyncio.run(get(f"{web.base}/?fontsize=14", headers=cookies))
        assert status == 200 and response.headers["X-Frame-Options"] == "DENY"
        assert f'data-session-websocket-url="ws://{host}/ws"' in page
    status, _, _ = asyncio.run(get(web.base + "/static/js/textual.js"))
    assert status == 200  # textual-serve's own assets need no token


def test_the_right_token_and_origin_get_a_session(web: WebServer):
    """The other side of the refusals: the same server does open a session (and its process)."""
    before = web.children()

    async def open_session() -> set[int]:
        url = f"ws://127.0.0.1:{web.port}/ws?width=80&height=24&token={TOKEN}"
        async with aiohttp.ClientSession() as session, session.ws_connect(url, origin=web.base):
            deadline = time.monotonic() + 30
            while not (started := web.children() - before) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return started

    assert asyncio.run(open_session())


def test_token_env_empty_is_one_line_and_no_server(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "nanochat_tui.cli", "web", "--port", "1", "--token-env", TOKEN_ENV],
        capture_output=True,
        text=True,
        env={**os.environ, TOKEN_ENV: "", "NANOCHAT_TUI_HOME": str(tmp_path)},
        timeout=60,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"--token-env {TOKEN_ENV}: that environment variable is empty" in proc.stderr


def test_web_serves_the_tui_to_a_browser_session(tmp_path: Path):
    """The browser's path: open the printed URL (cookie, redirect), read the page's websocket
    URL, connect from the page's origin with the cookie only, and get the TUI's first frame.
    The token appears once in everything the server printed: the start URL."""
    server = start_web(tmp_path / "home")
    try:
        match = re.search(r"(http://127\.0\.0\.1:\d+/)\?token=([\w-]+)", server.text())
        assert match, server.text()
        start_url, token = match[0], match[2]

        async def first_frame() -> str:
            jar = aiohttp.CookieJar(unsafe=True)  # the default jar ignores cookies of IP hosts
            async with aiohttp.ClientSession(cookie_jar=jar) as session:
                async with session.get(start_url) as page:
                    assert page.status == 200 and "token" not in str(page.url)
                    html = await page.text()
                ws_url = re.search(r'data-session-websocket-url="([^"]+)"', html)[1]
                received = ""
                url = f"{ws_url}?width=100&height=30"  # what textual.js appends
                async with session.ws_connect(url, origin=match[1].rstrip("/")) as ws:
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
        stop_web(server)
    assert server.text().count(token) == 1
    logs = "".join(p.read_text() for p in (tmp_path / "home").rglob("*.log"))
    assert token not in logs
