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
    assert "not checked online" in out and "--verify" in out
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


def test_auth_contacts_wandb_only_when_asked_and_says_so_first(monkeypatch, capsys) -> None:
    """Regression (issue 10): `auth set wandb` sent the key to api.wandb.ai without saying so."""
    import socket

    from nanochat_tui.cli import main

    def no_network(*args, **kwargs):
        raise AssertionError(f"network contacted: {args}")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(KEY + "\n"))
    assert main(["auth", "set", "wandb"]) == 0
    assert main(["auth", "status"]) == 0
    out, _ = capsys.readouterr()
    assert "not checked online" in out and "api.wandb.ai" in out

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr("sys.stdin", io.StringIO(KEY + "\n"))
    assert main(["auth", "set", "wandb", "--verify"]) == 0
    out, _ = capsys.readouterr()
    said, result = out.index("checking the key with https://api.wandb.ai"), out.index("offline (")
    assert said < result and KEY not in out


def test_crash_dump_scrubs_stored_secret_in_env_var_with_another_name(
    monkeypatch, tmp_path
) -> None:
    """Regression (issue 10): a stored key held in an env var named e.g. MY_CFG was written
    verbatim; so were credential-shaped values in unrelated env vars."""
    odd = "local-" + "Zq" * 25  # no generic pattern matches it: only the stored value can
    secrets.set_secret("wandb", odd)
    secrets.reset_cache()  # a fresh process: it has not read the key itself
    monkeypatch.setenv("MY_CFG", odd)
    monkeypatch.setenv("DEPLOY_THING", "sk-" + "Ab1" * 10)
    monkeypatch.setenv("OTHER", "Xy7" * 10)  # mixed-case letters+digits token shape
    monkeypatch.setenv("ENDPOINT", "https://bob:hunter2secret@example.org/v1")
    monkeypatch.setenv("HARMLESS", "/usr/local/bin:/usr/bin")
    try:
        raise RuntimeError(f"failed with {odd}")
    except RuntimeError as err:
        text = write_crash_dump(err, tmp_path).read_text()
    for value in (odd, "sk-" + "Ab1" * 10, "Xy7" * 10, "hunter2secret"):
        assert value not in text
    assert "MY_CFG=***" in text and "/usr/local/bin:/usr/bin" in text
