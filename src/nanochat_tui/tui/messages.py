"""Messages panes post to announce shared-state changes; the app re-broadcasts them to all panes.

A pane posts e.g. ``ConfigChanged(config)``; it bubbles to the app, which sends a copy (with
``broadcast=True``) to every mounted pane, so each pane only needs ``on_config_changed``.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message


class SharedMessage(Message):
    """Base of re-broadcast messages. ``broadcast`` is True on the copies the app hands out."""

    def __init__(self, *, broadcast: bool = False) -> None:
        super().__init__()
        self.broadcast = broadcast
        if broadcast:
            self.bubble = False  # a copy must never travel back up to the app

    def copy_for_broadcast(self) -> SharedMessage:
        raise NotImplementedError


class ConfigChanged(SharedMessage):
    """app.state.config (and maybe prefab/base) changed."""

    def __init__(self, config: Any, *, broadcast: bool = False) -> None:
        super().__init__(broadcast=broadcast)
        self.config = config

    def copy_for_broadcast(self) -> ConfigChanged:
        return ConfigChanged(self.config, broadcast=True)


class CheckpointLoaded(SharedMessage):
    """app.state.checkpoint changed (``info`` is an rundir.CheckpointInfo or None)."""

    def __init__(self, info: Any, *, broadcast: bool = False) -> None:
        super().__init__(broadcast=broadcast)
        self.info = info

    def copy_for_broadcast(self) -> CheckpointLoaded:
        return CheckpointLoaded(self.info, broadcast=True)


class RunChanged(SharedMessage):
    """app.state.run changed (a RunHandle or None)."""

    def __init__(self, run: Any, *, broadcast: bool = False) -> None:
        super().__init__(broadcast=broadcast)
        self.run = run

    def copy_for_broadcast(self) -> RunChanged:
        return RunChanged(self.run, broadcast=True)


class DeviceInfo(SharedMessage):
    """A run or checkpoint load learned the device (jax_engine.flops.device_summary() dict)."""

    def __init__(self, summary: dict[str, Any], *, broadcast: bool = False) -> None:
        super().__init__(broadcast=broadcast)
        self.summary = summary

    def copy_for_broadcast(self) -> DeviceInfo:
        return DeviceInfo(self.summary, broadcast=True)


class AuthChanged(SharedMessage):
    """A secret was stored or deleted (the status bar re-reads secret_status)."""

    def __init__(self, name: str, *, broadcast: bool = False) -> None:
        super().__init__(broadcast=broadcast)
        self.name = name

    def copy_for_broadcast(self) -> AuthChanged:
        return AuthChanged(self.name, broadcast=True)
