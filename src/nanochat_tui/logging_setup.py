"""Structured app log: JSON lines in ``paths.log_dir()/app.log``, secrets scrubbed on the way out.

``setup_logging()`` installs the file handler on the ``nanochat_tui`` logger; ``set_debug()`` flips
the level at run time (the TUI's ctrl+d); ``add_listener()`` lets the TUI's log panel see records.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from nanochat_tui import paths

LOGGER_NAME = "nanochat_tui"
LOG_FILE = "app.log"


def _scrub(text: str) -> str:
    from nanochat_tui.crash import known_secret_values, scrub

    return scrub(text, known_secret_values())


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (+ exception), secrets scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": round(record.created, 3),
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _scrub(json.dumps(entry, ensure_ascii=False, default=str))


class ListenerHandler(logging.Handler):
    """Forwards scrubbed, formatted lines to callbacks (the TUI log panel)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.listeners: list[Callable[[logging.LogRecord, str], None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not self.listeners:
            return
        try:
            line = _scrub(f"{record.levelname.lower():7} {record.name}: {record.getMessage()}")
        except Exception:
            return
        for listener in list(self.listeners):
            with contextlib.suppress(Exception):
                listener(record, line)


_file_handler: logging.Handler | None = None
_listener_handler = ListenerHandler()


def log_path() -> Path:
    return paths.log_dir() / LOG_FILE


def setup_logging(debug: bool = False) -> Path:
    """Install (once per log path) the JSON-lines file handler; returns the log file path."""
    global _file_handler
    logger = logging.getLogger(LOGGER_NAME)
    path = log_path()
    if _file_handler is not None and getattr(_file_handler, "baseFilename", None) != str(path):
        logger.removeHandler(_file_handler)
        _file_handler.close()
        _file_handler = None
    if _file_handler is None:
        _file_handler = logging.FileHandler(path, encoding="utf-8", delay=False)
        _file_handler.setFormatter(JsonLineFormatter())
        logger.addHandler(_file_handler)
    if _listener_handler not in logger.handlers:
        logger.addHandler(_listener_handler)
    logger.propagate = False
    route_library_logging(_file_handler)
    set_debug(debug)
    return path


def route_library_logging(handler: logging.Handler) -> None:
    """Send every other library's log records (opentelemetry, urllib3, wandb, absl, jax, ...) and
    Python warnings to the app log, never to the terminal: without a handler on the root logger,
    Python prints WARNING records to stderr (over a progress bar, after a final summary, in
    ``--quiet`` mode). Our own records keep their handlers (``nanochat_tui`` does not propagate).
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_nanochat_app_log", False)]:
        root.removeHandler(old)
    handler._nanochat_app_log = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    logging.captureWarnings(True)


def set_debug(debug: bool) -> None:
    logging.getLogger(LOGGER_NAME).setLevel(logging.DEBUG if debug else logging.INFO)


def is_debug() -> bool:
    return logging.getLogger(LOGGER_NAME).level <= logging.DEBUG


def add_listener(callback: Callable[[logging.LogRecord, str], None]) -> None:
    _listener_handler.listeners.append(callback)


def remove_listener(callback: Callable[[logging.LogRecord, str], None]) -> None:
    if callback in _listener_handler.listeners:
        _listener_handler.listeners.remove(callback)
