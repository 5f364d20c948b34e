"""Run ``nanochat-tui serve`` as a child process and read its ``/stats`` (stdlib only, no JAX):
what the TUI's Serve screen drives, so the cockpit stays responsive while the server decodes."""

from __future__ import annotations

import atexit
import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path


class ServeProcess:
    """One server child process on 127.0.0.1; ``stats()`` polls it, ``stop()`` ends it."""

    def __init__(
        self, path: str, port: int, *, api_key_env: str | None = None, slots: int = 8
    ) -> None:
        self.path, self.port, self.api_key_env, self.slots = path, port, api_key_env, slots
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="nanochat-serve-", suffix=".log")[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        cmd = [sys.executable, "-m", "nanochat_tui.cli", "serve", self.path]
        cmd += ["--port", str(self.port), "--slots", str(self.slots)]
        if self.api_key_env:
            cmd += ["--api-key-env", self.api_key_env]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        atexit.register(self.stop)  # the server never outlives the app that started it

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats(self, api_key: str | None = None) -> dict | None:
        """The server's ``/stats`` JSON, or None while it is starting (or gone)."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/stats")
        if api_key:
            req.add_header("Authorization", f"Bearer {api_key}")
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def last_lines(self, n: int = 3) -> str:
        """The end of the server's output (its error, when it exited)."""
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(line for line in lines[-n:] if line.strip())

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log_path.unlink(missing_ok=True)
