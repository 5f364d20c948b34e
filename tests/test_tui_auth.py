"""Auth pane: store a W&B key by typing it; it never appears on screen, in the log or a crash dump."""

from __future__ import annotations

import pytest

from nanochat_tui import logging_setup, secrets
from nanochat_tui.crash import write_crash_dump
from nanochat_tui.tui.app import NanochatApp

pytestmark = pytest.mark.anyio
KEY = "abcdef0123456789abcdef0123456789abcdef01"


async def _enter_key(pilot, key: str) -> None:
    await pilot.press("6")  # the key field has the focus on entry
    await pilot.pause()
    await pilot.press(*key, "enter")
    await pilot.pause()
    await pilot.pause()


async def test_store_key_never_shown_logged_or_dumped(screen_text) -> None:
    # W&B logging on, so the status row shows where the key is (with it off it says "W&B off")
    app = NanochatApp(overrides=["telemetry.wandb.enabled=true"])
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("6")
        await pilot.pause()
        await pilot.press(*KEY[:10])
        await pilot.pause()
        assert KEY[:10] not in screen_text(app)  # masked while typing
        await pilot.press(*KEY[10:], "enter")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        text = screen_text(app)
        assert secrets.get_secret("wandb") == KEY
        assert "stored in 0600 file ✓" in text and "⚠" in text  # visible fallback warning
        assert "W&B file·offline" in text  # status bar
        assert "not checked online" in text  # nothing contacted W&B without being asked
        await pilot.press("ctrl+t")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "offline" in screen_text(app)  # the explicit check (WANDB_MODE=offline here)
        for fragment in (KEY, KEY[-4:], KEY[:8]):
            assert fragment not in text
        try:
            raise ValueError(f"bad thing near {KEY}")
        except ValueError as err:
            dump = write_crash_dump(err)
        await pilot.press("escape", "q")
    log_text = logging_setup.log_path().read_text()
    assert "W&B key stored" in log_text
    assert KEY not in log_text and KEY[-4:] not in log_text
    assert KEY not in dump.read_text()


async def test_keyring_backend_no_warning(screen_text, memory_keyring) -> None:
    app = NanochatApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await _enter_key(pilot, KEY)
        text = screen_text(app)
        assert "stored in keyring ✓" in text and "⚠" not in text
        assert memory_keyring.store[("nanochat-tui", "wandb")] == KEY
        assert KEY not in text


async def test_bad_key_is_refused_with_reason(screen_text) -> None:
    app = NanochatApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await _enter_key(pilot, "short")
        text = screen_text(app)
        assert "40+ characters" in text and "Nothing stored" in text
        assert not secrets.secret_status("wandb").stored


async def test_delete_key_asks_first(screen_text) -> None:
    secrets.set_secret("wandb", KEY)
    app = NanochatApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("6", "ctrl+x")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert not secrets.secret_status("wandb").stored
        assert "not set" in screen_text(app)
