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
# Shapes of well-known credentials: W&B (40 hex, local-...), Hugging Face, OpenAI/Anthropic,
# GitHub, Slack, AWS access keys, JWTs, bearer tokens, passwords in URLs.
SECRET_VALUE = re.compile(
    r"(hf_[A-Za-z0-9]{20,}|\b[0-9a-f]{40}\b|local-[0-9a-f]{40,}|\bsk-[A-Za-z0-9_-]{20,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}|github_pat_\w{30,}|\bxox[abprs]-[\w-]{10,}"
    r"|\bAKIA[0-9A-Z]{16}\b|\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}"
    r"|(?<=Bearer )[\w.~+/-]{16,}|(?<=://)[^/\s:@]+:[^/\s@]+(?=@))"
)
# A long token of letters and digits with no spaces or path separators (an API key in an env var
# with an unrelated name): at least 24 characters mixing upper, lower and digits, or 32+ hex.
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_\-.=+]{24,}")


def scrub(text: str, extra_secrets: list[str] | None = None) -> str:
    """Replace anything that looks like a secret (and any known secret value) with ***."""
    for secret in sorted(extra_secrets or [], key=len, reverse=True):
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return SECRET_VALUE.sub("***", text)


def looks_like_credential(value: str) -> bool:
    """True for an env value shaped like an API key or token, whatever the variable is called."""
    value = value.strip()
    if SECRET_VALUE.search(value):
        return True
    if not _TOKEN_LIKE.fullmatch(value) or "/" in value:
        return False
    classes = sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
        )
    )
    hexish = len(value) >= 32 and all(c in "0123456789abcdefABCDEF-" for c in value)
    return classes == 3 or hexish


def known_secret_values(read_store: bool = False) -> list[str]:
    """Secret values to scrub: those this process has seen, env vars named like secrets, env
    values shaped like tokens and, with ``read_store`` (crash dumps), every stored secret."""
    values = [
        v
        for k, v in os.environ.items()
        if len(v) >= 8 and (SECRET_ENV.search(k) or looks_like_credential(v))
    ]
    try:
        from nanochat_tui import secrets

        if read_store:
            values += secrets.stored_secret_values()
        values += secrets.cached_secret_values()
    except Exception:
        pass
    return values


def write_crash_dump(err: BaseException, folder: Path | None = None) -> Path:
    from nanochat_tui import __version__, paths

    folder = folder or (paths.log_dir() / "crash")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / time.strftime("crash-%Y%m%d-%H%M%S.txt")
    env = {
        k: ("***" if SECRET_ENV.search(k) or looks_like_credential(v) else v)
        for k, v in sorted(os.environ.items())
    }
    body = [
        f"nanochat-tui {__version__} on Python {sys.version.split()[0]} ({platform.platform()})",
        f"argv: {sys.argv}",
        "",
        "".join(traceback.format_exception(type(err), err, err.__traceback__)),
        "environment:",
        *(f"  {k}={v}" for k, v in env.items()),
    ]
    path.write_text(scrub("\n".join(body), known_secret_values(read_store=True)), encoding="utf-8")
    os.chmod(path, 0o600)
    return path
