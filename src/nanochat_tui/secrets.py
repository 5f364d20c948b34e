"""Secrets (the W&B API key): OS keyring first, an owner-only 0600 file as a visible fallback.

A secret value never leaves this module except through ``get_secret`` — it is never printed,
logged or shown back (not even its last characters). Every value this process reads or stores is
remembered so crash dumps can scrub it (``cached_secret_values``, used by ``crash.py``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from nanochat_tui import paths

SERVICE = "nanochat-tui"
SECRETS_FILE = "secrets.json"
# name -> environment variable that may also provide it (read only, never written)
ENV_VARS = {"wandb": "WANDB_API_KEY"}
KNOWN_SECRETS = ("wandb",)
WANDB_HOST = "api.wandb.ai"  # the only host an explicit key check contacts
FALLBACK_WARNING = (
    "no usable OS keyring (headless Linux / SSH?): the key is stored in {path} (mode 0600, "
    "readable by your user only). Install a keyring backend (e.g. gnome-keyring or "
    "keyrings.alt) for better protection."
)

_seen: set[str] = set()

# W&B accepts: a JWT (a.b.c), or [prefix-]secret where secret is word chars, 40+ long
# (classic keys: 40 hex; on-prem/newer keys: "local-..." and other prefixed, longer forms).
_JWT = re.compile(r"[\w-]+\.[\w-]+\.[\w-]+")


@dataclass(frozen=True)
class StoreResult:
    """Where a secret went; ``warning`` is set when it had to fall back to the 0600 file."""

    backend: str  # "keyring" | "file"
    warning: str | None = None


@dataclass(frozen=True)
class SecretStatus:
    """Whether a secret is stored and where — never the value."""

    stored: bool
    backend: str | None  # "keyring" | "file" | "env" | None
    warning: str | None = None

    def describe(self) -> str:
        if not self.stored:
            return "not set"
        where = {"keyring": "in keyring", "file": "in 0600 file", "env": "from environment"}
        return f"stored {where.get(self.backend or '', self.backend)} ✓ (value hidden)"


def _remember(value: str | None) -> str | None:
    if value:
        _seen.add(value)
    return value


def secret_from_env(name: str, flag: str, otherwise: str) -> str:
    """The secret in environment variable ``name`` (given with ``flag``), remembered for
    scrubbing; an empty or unset variable is one error whose remedy ends with ``otherwise``."""
    from nanochat_tui.errors import UserError

    value = os.environ.get(name, "")
    if not value:
        raise UserError(
            f"{flag} {name}: that environment variable is empty or unset",
            f"export {name}=... first, or {otherwise}",
        )
    return _remember(value) or value


def cached_secret_values() -> list[str]:
    """Every secret value this process has read or stored (for scrubbing crash dumps and logs)."""
    return sorted(_seen)


def stored_secret_values() -> list[str]:
    """The values of every secret stored now (keyring, 0600 file, env), for scrubbing only."""
    return [v for name in KNOWN_SECRETS if (v := get_secret(name))]


def reset_cache() -> None:
    """Forget remembered values (tests)."""
    _seen.clear()


def check_wandb_key(key: str) -> str | None:
    """Format check mirroring wandb's own; a sentence describing the problem, or None when fine."""
    key = key.strip()
    if not key:
        return "The key is empty."
    if _JWT.fullmatch(key):
        return None
    secret = key.split("-", 1)[1] if "-" in key else key
    if not re.fullmatch(r"[\w-]+", secret):
        return "A W&B key may only contain letters, digits, '_' and '-' (no spaces)."
    if len(secret) < 40:
        return f"A W&B key has 40+ characters after any prefix; this one has {len(secret)}."
    return None


def validate_secret(name: str, value: str) -> str | None:
    """Format check for a named secret (only ``wandb`` has a known format)."""
    return check_wandb_key(value) if name == "wandb" else (None if value.strip() else "empty")


# ---------------------------------------------------------------- keyring


def keyring_usable() -> bool:
    """False on machines without a real backend (keyring's fail backend or an empty chainer)."""
    try:
        import keyring
        import keyring.backends.fail
    except Exception:
        return False
    backend = keyring.get_keyring()
    if isinstance(backend, keyring.backends.fail.Keyring):
        return False
    try:
        from keyring.backends.chainer import ChainerBackend

        if isinstance(backend, ChainerBackend) and not backend.backends:
            return False
    except Exception:
        pass
    return True


def _keyring_get(name: str) -> str | None:
    if not keyring_usable():
        return None
    import keyring

    try:
        return keyring.get_password(SERVICE, name)
    except Exception:
        return None


def _keyring_set(name: str, value: str) -> bool:
    if not keyring_usable():
        return False
    import keyring

    try:
        keyring.set_password(SERVICE, name, value)
        return True
    except Exception:
        return False


def _keyring_delete(name: str) -> bool:
    if not keyring_usable():
        return False
    import keyring

    try:
        keyring.delete_password(SERVICE, name)
        return True
    except Exception:
        return False


# ---------------------------------------------------------------- 0600 file


def secrets_file() -> Path:
    return paths.config_dir() / SECRETS_FILE


def _file_read() -> dict[str, str]:
    path = secrets_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def _file_write(data: dict[str, str]) -> None:
    from nanochat_tui.rundir import write_atomic

    path = secrets_file()
    if not data:
        path.unlink(missing_ok=True)
        return
    write_atomic(path, json.dumps(data, indent=1), private=True)


# ---------------------------------------------------------------- public API


def get_secret(name: str) -> str | None:
    """The secret's value (keyring, then the 0600 file, then its env var), or None."""
    value = _keyring_get(name) or _file_read().get(name)
    if not value and name in ENV_VARS:
        value = os.environ.get(ENV_VARS[name]) or None
    return _remember(value)


def set_secret(name: str, value: str) -> StoreResult:
    """Store a secret; falls back to a 0600 file (with a warning) without a usable keyring."""
    value = value.strip()
    _remember(value)
    if _keyring_set(name, value):
        data = _file_read()
        if data.pop(name, None) is not None:  # do not leave a stale copy behind
            _file_write(data)
        return StoreResult("keyring")
    data = _file_read()
    data[name] = value
    _file_write(data)
    return StoreResult("file", FALLBACK_WARNING.format(path=secrets_file()))


def delete_secret(name: str) -> bool:
    """Remove a secret from the keyring and the file; True if anything was removed."""
    removed = _keyring_delete(name)
    data = _file_read()
    if data.pop(name, None) is not None:
        _file_write(data)
        removed = True
    return removed


def secret_status(name: str) -> SecretStatus:
    """Where a secret is stored (never its value)."""
    if _remember(_keyring_get(name)):
        return SecretStatus(True, "keyring")
    if _remember(_file_read().get(name)):
        return SecretStatus(True, "file", FALLBACK_WARNING.format(path=secrets_file()))
    if name in ENV_VARS and _remember(os.environ.get(ENV_VARS[name])):
        return SecretStatus(True, "env")
    return SecretStatus(False, None)


def wandb_mode_from_env() -> str | None:
    """'WANDB_MODE=offline' when the environment forces W&B offline, else None (no network used)."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return f"WANDB_MODE={os.environ['WANDB_MODE']}"
    return None


def wandb_offline_reason() -> str | None:
    """Why an online check is impossible right now, or None when it may be tried.

    Opens a TCP connection to WANDB_HOST unless the environment forces offline mode: call it
    only after telling the user that W&B is being contacted.
    """
    forced = wandb_mode_from_env()
    if forced:
        return forced
    import socket

    try:
        socket.create_connection((WANDB_HOST, 443), timeout=2).close()
    except OSError:
        return f"no network route to {WANDB_HOST}"
    return None


def verify_wandb_online(key: str) -> str:
    """A login check against W&B when online; returns a one-line result (never the key).

    Tests never reach the network part: conftest sets WANDB_MODE=offline.
    """
    reason = wandb_offline_reason()
    if reason:
        return f"offline ({reason}): format OK, login not verified — W&B logs offline until online"
    _remember(key)
    try:
        from wandb.sdk.lib.wbauth.host_url import HostUrl
        from wandb.sdk.lib.wbauth.validation import check_api_key_validity

        problem = check_api_key_validity(host=HostUrl(f"https://{WANDB_HOST}"), api_key=key)
    except Exception as err:  # wandb internals move between versions
        return f"could not verify online ({type(err).__name__}); format OK"
    return f"rejected by W&B: {problem}" if problem else "verified with W&B ✓"
