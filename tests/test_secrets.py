"""secrets: format check, keyring vs 0600 fallback, status, scrubbing, and the auth CLI."""

from __future__ import annotations

import io
import os
import stat

import pytest

from nanochat_tui import secrets
from nanochat_tui.crash import write_crash_dump

KEY = "0123456789abcdef0123456789abcdef01234567"


def test_format_check() -> None:
    assert secrets.check_wandb_key(KEY) is None
    assert secrets.check_wandb_key("local-" + "ab" * 20) is None
    assert secrets.check_wandb_key("a.b.c") is None  # JWT form
    assert "40+" in secrets.check_wandb_key("abc123")
    assert "letters" in secrets.check_wandb_key(KEY[:20] + " " + KEY[20:])
    assert secrets.check_wandb_key("") == "The key is empty."


def test_fail_keyring_falls_back_to_0600_file_with_warning() -> None:
    assert not secrets.keyring_usable()
    result = secrets.set_secret("wandb", KEY)
    assert result.backend == "file" and "0600" in result.warning
    path = secrets.secrets_file()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert secrets.get_secret("wandb") == KEY
    status = secrets.secret_status("wandb")
    assert status.stored and status.backend == "file" and status.warning
    assert KEY not in status.describe() and KEY[-4:] not in status.describe()
    assert secrets.delete_secret("wandb")
    assert not path.exists()
    assert secrets.get_secret("wandb") is None


def test_working_keyring_is_used(memory_keyring) -> None:
    result = secrets.set_secret("wandb", KEY)
    assert result.backend == "keyring" and result.warning is None
    assert memory_keyring.store[("nanochat-tui", "wandb")] == KEY
    assert not secrets.secrets_file().exists()
    assert secrets.secret_status("wandb").backend == "keyring"
    secrets.delete_secret("wandb")
    assert secrets.get_secret("wandb") is None


def test_crash_dump_scrubs_values_read(tmp_path) -> None:
    odd = "local-" + "Zq" * 25  # not matched by the generic regex: only the cache can scrub it
    secrets.set_secret("wandb", odd)
    secrets.reset_cache()
    assert secrets.get_secret("wandb") == odd
    assert odd in secrets.cached_secret_values()
    try:
        raise RuntimeError(f"boom with {odd}")
    except RuntimeError as err:
        path = write_crash_dump(err, tmp_path)
    assert odd not in path.read_text()


def test_auth_cli_set_status_delete(monkeypatch, capsys) -> None:
    from nanochat_tui.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO(KEY + "\n"))
    assert main(["auth", "set", "wandb"]) == 0
    out, err = capsys.readouterr()
    assert KEY not in out + err and KEY[-4:] not in out + err
    assert "stored" in out and "warning" in err and "0600" in err
    assert "offline" in out
    assert main(["auth", "status"]) == 0
    out, _ = capsys.readouterr()
    assert "0600 file" in out and "warning" in out and KEY not in out
    assert main(["auth", "delete", "wandb"]) == 0
    assert main(["auth", "status"]) == 1


def test_auth_cli_rejects_bad_key(monkeypatch, capsys) -> None:
    from nanochat_tui.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("tooshort\n"))
    assert main(["auth", "set", "wandb"]) == 2
    _, err = capsys.readouterr()
    assert "not stored" in err and "tooshort" not in err
    assert not secrets.secret_status("wandb").stored


@pytest.mark.parametrize("mode", ["offline", "disabled"])
def test_online_check_is_skipped_offline(monkeypatch, mode) -> None:
    monkeypatch.setenv("WANDB_MODE", mode)
    assert "offline" in secrets.verify_wandb_online(KEY)
