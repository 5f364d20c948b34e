"""Shared test fixtures.

Every test runs with ``NANOCHAT_TUI_HOME`` pointing at a fresh tmp dir (so config, runs, logs and
secrets never touch the real user dirs) and with ``keyring`` forced to the *fail* backend (like a
headless Linux box over SSH). A test that wants a working keyring opts in with the
``memory_keyring`` fixture.
"""

from __future__ import annotations

from pathlib import Path

import keyring
import keyring.backend
import keyring.backends.fail
import keyring.errors
import pytest


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A working in-process keyring backend for tests."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.store:
            raise keyring.errors.PasswordDeleteError("not found")
        del self.store[(service, username)]


@pytest.fixture(autouse=True)
def _steady_cursors(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In snapshot tests, text cursors do not blink: a blink that lands between the last key and
    the screenshot (likely on a loaded machine) would make the image vary."""
    if "snap_compare" not in request.fixturenames:
        return
    from textual.widgets import Input, TextArea

    for widget in (Input, TextArea):
        monkeypatch.setattr(widget.cursor_blink, "_default", False)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point NANOCHAT_TUI_HOME at a tmp dir and make keyring unusable (opt in with memory_keyring)."""
    home = tmp_path / "nanochat-home"
    home.mkdir()
    monkeypatch.setenv("NANOCHAT_TUI_HOME", str(home))
    monkeypatch.delenv("NANOCHAT_TUI_RUNS", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    # Estimates render the same on every machine (the real profile is tested in test_estimates).
    monkeypatch.setenv("NANOCHAT_TUI_CPU_PROFILE", "cores=8,flops=5e11,memory=32G")
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    try:
        from nanochat_tui import secrets as _secrets

        _secrets.reset_cache()
    except (ImportError, AttributeError):
        pass
    from nanochat_tui.config.machine import cpu_profile

    cpu_profile.cache_clear()
    yield home
    keyring.set_keyring(previous)
    cpu_profile.cache_clear()


@pytest.fixture
def memory_keyring() -> MemoryKeyring:
    """Opt in to a working (in-memory) keyring backend for this test."""
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    return backend


def _screen_text(app) -> str:
    """The app's current screen as plain text rows (from the SVG screenshot), for assertions."""
    import html
    import re

    svg = app.export_screenshot()
    rows: dict[float, list[tuple[float, str]]] = {}
    for m in re.finditer(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>', svg):
        text = html.unescape(m.group(3)).replace("\xa0", " ")
        rows.setdefault(float(m.group(2)), []).append((float(m.group(1)), text))
    return "\n".join("".join(t for _, t in sorted(v)) for _, v in sorted(rows.items()))


@pytest.fixture
def screen_text():
    """screen_text(app) -> str: the rendered screen as text rows (TUI tests)."""
    return _screen_text


async def _type_into(pilot, selector: str, text: str) -> None:
    """Click a field, clear it with backspaces and type ``text`` key by key, like a user.

    Waits (up to 60 s) for the field to be mounted: a pane composes after the first frame, which
    a loaded machine can push past one ``pilot.pause()``."""
    import time

    from textual.css.query import NoMatches

    deadline = time.monotonic() + 60
    while True:
        try:
            widget = pilot.app.screen.query_one(selector)
            if widget.region.area > 0:  # laid out: a click lands on it
                break
        except NoMatches:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} was mounted but never laid out")
        await pilot.pause(0.1)
    await pilot.click(selector)
    await pilot.press("end", *(["backspace"] * len(getattr(widget, "value", ""))))
    keys = [
        {" ": "space", ".": "full_stop", "-": "minus", "_": "underscore"}.get(c, c) for c in text
    ]
    if keys:
        await pilot.press(*keys)
    await pilot.pause()


@pytest.fixture
def type_into():
    """await type_into(pilot, "#selector", "text"): focus by click, clear, type key by key."""
    return _type_into


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio, which Textual needs."""
    return "asyncio"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """Train one tiny checkpoint per test session (its own NANOCHAT_TUI_HOME for the caches):
    the Chat and Evals pane tests load it."""
    from helpers import tiny_overrides
    from nanochat_tui.config import load_config
    from nanochat_tui.jax_engine.train import train

    home = tmp_path_factory.mktemp("train-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(home))
        overrides = tiny_overrides({"train.num_iterations": 20, "run.name": "trained"})
        config = load_config("tiny", overrides)
        run_dir = home / "runs" / "trained"
        result = train(config, run_dir, lambda event: None)
    assert result.status == "finished", result
    return run_dir
