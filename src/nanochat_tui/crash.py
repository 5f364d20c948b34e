"""Crash dumps: traceback + versions + scrubbed environment, written to a file, never a secret."""

from __future__ import annotations

import os
import platform
import re
import sys
import time
import traceback
from pathlib import Path

SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.I)
# W&B keys are 40 hex chars (or "local-..." prefixed); HF tokens start with hf_.
SECRET_VALUE = re.compile(r"(hf_[A-Za-z0-9]{20,}|\b[0-9a-f]{40}\b|local-[0-9a-f]{40,})")


def scrub(text: str, extra_secrets: list[str] | None = None) -> str:
    """Replace anything that looks like a secret (and any known secret value) with ***."""
    for secret in extra_secrets or []:
        if secret:
            text = text.replace(secret, "***")
    return SECRET_VALUE.sub("***", text)


def known_secret_values() -> list[str]:
    values = [v for k, v in os.environ.items() if SECRET_ENV.search(k) and len(v) >= 8]
    try:
        from nanochat_tui.secrets import cached_secret_values

        values += cached_secret_values()
    except Exception:
        pass
    return values


def write_crash_dump(err: BaseException, folder: Path | None = None) -> Path:
    from nanochat_tui import __version__, paths

    folder = folder or (paths.log_dir() / "crash")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / time.strftime("crash-%Y%m%d-%H%M%S.txt")
    env = {k: ("***" if SECRET_ENV.search(k) else v) for k, v in sorted(os.environ.items())}
    body = [
        f"nanochat-tui {__version__} on Python {sys.version.split()[0]} ({platform.platform()})",
        f"argv: {sys.argv}",
        "",
        "".join(traceback.format_exception(type(err), err, err.__traceback__)),
        "environment:",
        *(f"  {k}={v}" for k, v in env.items()),
    ]
    path.write_text(scrub("\n".join(body), known_secret_values()), encoding="utf-8")
    os.chmod(path, 0o600)
    return path
