"""The control channel of a detached run: an owner-only unix socket speaking newline-delimited JSON.

Request  {"cmd": "checkpoint" | "stop" | "patch" | "status" | "ping", "changes": {...}}
Response {"ok": true, ...} or {"ok": false, "error": "..."}

Security: the socket is created under a 0177 umask (so it is 0600 from the first instant) and
chmod'ed 0600 again; on Linux every connection's peer uid (SO_PEERCRED) must equal ours. Unix
socket paths are limited to ~108 bytes, so a long run dir gets its socket in a short private
0700 directory instead ($XDG_RUNTIME_DIR/nanochat-tui or /tmp/nanochat-tui-<uid>); the path is
recorded in run.json.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import stat
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nanochat_tui.errors import UserError

log = logging.getLogger(__name__)
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS; keep a margin
MAX_REQUEST = 1 << 20

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def _private_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "nanochat-tui" if runtime and Path(runtime).is_dir() else None
    if base is None or len(str(base)) > 60:
        base = Path("/tmp") / f"nanochat-tui-{os.getuid()}"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = base.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise UserError(
            f"{base} is not a directory owned by you",
            "remove it or set XDG_RUNTIME_DIR to a private directory",
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(base, 0o700)
    return base


def socket_path_for(run_dir: Path) -> Path:
    """run_dir/control.sock, or a short private path when that would be too long."""
    run_dir = Path(run_dir).resolve()
    path = run_dir / "control.sock"
    if len(os.fsencode(str(path))) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(str(run_dir))).hexdigest()[:16]
    return _private_dir() / f"{digest}.sock"


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process on the other end (Linux SO_PEERCRED), or None where unsupported."""
    if sys.platform.startswith("linux") and hasattr(socket, "SO_PEERCRED"):
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return uid
    getpeereid = getattr(conn, "getpeereid", None)  # not in CPython; kept for completeness
    return getpeereid()[0] if getpeereid else None


class ControlServer:
    """Accepts connections on a background thread; each JSON line goes to ``handler``."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = Path(path)
        self.handler = handler
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def start(self) -> ControlServer:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if _is_live(self.path):
                raise UserError(
                    f"another process is already serving {self.path}",
                    "is the run already running? see `nanochat-tui runs`",
                )
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(8)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="control-socket", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn:
            uid = peer_uid(conn)
            if uid is not None and uid != os.getuid():
                log.warning("control socket: refused connection from uid %s", uid)
                return
            conn.settimeout(30)
            reader = conn.makefile("rb")
            while True:
                try:
                    line = reader.readline(MAX_REQUEST)
                except (OSError, TimeoutError):
                    return
                if not line:
                    return
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("request must be a JSON object")
                    response = self.handler(request)
                except Exception as err:
                    response = {"ok": False, "error": str(err)}
                try:
                    conn.sendall((json.dumps(response, default=str) + "\n").encode())
                except OSError:
                    return

    def close(self) -> None:
        self._closed.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


def _is_live(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(str(path))
            return True
    except OSError:
        return False


def request(path: Path, payload: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request and return the response; UserError when the run cannot be reached."""
    path = Path(path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall((json.dumps(payload) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        raise UserError(
            "run is not running (its control socket is gone)",
            "check `nanochat-tui runs`; a finished run can be resumed or inspected, not steered",
        ) from None
    except PermissionError:
        raise UserError(
            f"no permission to use {path}", "only the user who started a run can control it"
        ) from None
    except OSError as err:
        raise UserError(
            f"cannot reach the run's control socket: {err}", "is the run still alive?"
        ) from None
    if not data:
        raise UserError("the run closed the control connection", "only its owner may control a run")
    return json.loads(data)
