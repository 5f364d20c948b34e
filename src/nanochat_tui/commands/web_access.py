"""Who may drive ``nanochat-tui web``: a per-start token, a Host allow-list and a same-origin check.

The page starts a ``nanochat-tui tui`` process per websocket, and that TUI can start, stop and
patch runs and delete checkpoints, so only the person who started the server may open it. As in
Jupyter:

- a random token per start (or one from ``--token-env``) is printed once, as ``/?token=…``.
  Opening that URL sets an HttpOnly cookie named after the port and redirects to the URL without
  the token (out of the address bar and history); the page's websocket then carries the cookie.
  Scripts may pass ``?token=`` on any request instead. Tokens are compared in constant time.
- the Host header must name this machine (localhost, 127.0.0.1, [::1], the bind address, or a
  name given with ``--allow-host``), which defeats DNS rebinding;
- an Origin header, when sent (browsers always send one on websockets), must be the page's own
  origin, so no other site, nor another local port, can open a session.

A refused request gets ``403`` with a one-line reason before any textual-serve handler runs, so
it starts no process. Only textual-serve's static assets skip the token (never the Host and
Origin checks). Each refusal is one line on stderr and in the app log. aiohttp's log records go
through a filter that blanks the token.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from textual_serve.server import Server

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
# A Host header: a name or IPv4 address, or a bracketed IPv6 address, then an optional port.
_HOST_HEADER = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::\d{1,5})?")
STATIC_PREFIX = "/static/"
log = logging.getLogger("nanochat_tui.web")


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def host_name(host_header: str) -> str | None:
    """The lower-case host of a Host header (``[::1]:8080`` → ``::1``), or None when malformed."""
    match = _HOST_HEADER.fullmatch(host_header)
    if match is None:
        return None
    return match["name"].strip("[]").lower()


def quoted(text: str, limit: int = 80) -> str:
    """Client-sent text for a message: repr (control characters escaped), at most ``limit``."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def url_host(host: str) -> str:
    """``host`` as it goes in a URL: a wildcard bind address becomes 127.0.0.1, IPv6 gets []."""
    if host in WILDCARD_HOSTS:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True)
class Access:
    """The token and the Host names one ``web`` server accepts."""

    token: str = field(repr=False)
    port: int
    hosts: frozenset[str]

    @classmethod
    def for_server(cls, token: str, bind_host: str, port: int, allow: Iterable[str]) -> Access:
        """Loopback names, the bind address unless it is a wildcard, and ``--allow-host`` names."""
        extra = {name.strip("[]").lower() for name in allow}
        if bind_host not in WILDCARD_HOSTS:
            extra.add(bind_host.strip("[]").lower())
        return cls(token=token, port=port, hosts=LOOPBACK_HOSTS | extra)

    @property
    def cookie(self) -> str:
        """Cookie name, one per port: a browser shares cookies between ports of one host."""
        return f"nanochat-tui-web-{self.port}"

    def token_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(
            presented.encode("utf-8", "surrogateescape"), self.token.encode()
        )

    def refusal(self, request: web.Request) -> str | None:
        """Why ``request`` is refused (one line, with what to do), or None when it may go on."""
        name = host_name(request.host)
        if name is None or name not in self.hosts:
            return (
                f"refused: Host {quoted(request.host)} is not this machine; open the URL that "
                "`nanochat-tui web` printed, or start it with --allow-host NAME"
            )
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() != f"{request.scheme}://{request.host}".lower():
            return (
                f"refused: a page from {quoted(origin)} may not drive this server; only its own "
                f"page ({request.scheme}://{request.host}) may"
            )
        if request.path.startswith(STATIC_PREFIX):
            return None
        if self.token_matches(request.query.get("token")) or self.token_matches(
            request.cookies.get(self.cookie)
        ):
            return None
        return (
            "refused: missing or wrong token; open the URL with ?token=... that "
            "`nanochat-tui web` printed when it started"
        )


def access_middleware(access: Access) -> Callable[..., Awaitable[web.StreamResponse]]:
    """aiohttp middleware: refuse (403) what ``access`` refuses; trade a page's ?token= for the
    cookie; forbid framing (a framed page would be driven by clicks the user did not mean)."""

    @web.middleware
    async def check_access(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        reason = access.refusal(request)
        if reason is not None:
            line = f"{request.method} {quoted(request.path)} from {request.remote}: {reason}"
            print(line, file=sys.stderr, flush=True)
            log.warning("%s", line)
            return web.Response(status=403, text=reason + "\n")
        if request.path == "/" and access.token_matches(request.query.get("token")):
            target = str(request.rel_url.without_query_params("token"))
            found = web.Response(status=302, headers={"Location": target})
            found.set_cookie(access.cookie, access.token, path="/", httponly=True, samesite="Lax")
            return found
        response = await handler(request)
        if not response.prepared:
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        return response

    return check_access


class RedactToken(logging.Filter):
    """Blanks the token in log records (aiohttp's access log prints request lines with queries)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self._token in message:
            record.msg, record.args = message.replace(self._token, "<token>"), None
        return True


class GuardedServer(Server):
    """textual-serve's Server behind ``access``, through its public hooks only."""

    def __init__(self, command: str, access: Access, *, host: str, port: int, title: str) -> None:
        super().__init__(command, host=host, port=port, title=title)
        self.access = access

    def initialize_logging(self) -> None:
        """Blank the token in aiohttp's records (its access log prints request lines, queries
        included). No console handler: the CLI routes library records to the app log, and
        textual-serve's handler would print the locals of a failing frame."""
        for name in ("aiohttp.access", "aiohttp.server", "aiohttp.web"):
            logging.getLogger(name).addFilter(RedactToken(self.access.token))

    async def on_startup(self, app: web.Application) -> None:
        """Install the access check. aiohttp freezes an app's middleware list after its startup
        signal, so it still takes one here; were that to change, ``append`` would raise and the
        server would not start (never serve unchecked). textual-serve's banner is left out: it
        prints the URL without the token, which would only be refused."""
        app.middlewares.append(access_middleware(self.access))

    @aiohttp_jinja2.template("app_index.html")
    async def handle_index(self, request: web.Request) -> dict[str, Any]:
        """textual-serve's page, with its websocket and assets on the origin the browser used
        (the Host the access check admitted), so the cookie and Origin match through a tunnel
        or via ``localhost``; textual-serve would use the bind address."""
        origin = f"{request.scheme}://{request.host}"
        try:
            font_size = int(request.query.get("fontsize", "16"))
        except ValueError:
            font_size = 16
        return {
            "font_size": font_size,
            "app_websocket_url": f"ws://{request.host}/ws",
            "config": {"static": {"url": f"{origin}{STATIC_PREFIX}"}},
            "application": {"name": self.title},
        }
