"""Weights & Biases sink. Runs on the hub's background thread, so ``wandb.init`` never delays
training. Online only with a stored key *and* network; otherwise offline, writing a syncable
``RUN_DIR/wandb/offline-run-*`` (``wandb sync`` it later). The key is never printed and wandb's
console capture is off so it cannot scribble over the TUI."""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from nanochat_tui.telemetry.events import Event

STEP_KEYS = (
    "loss",
    "lr",
    "lr_multiplier",
    "tokens",
    "tokens_per_s",
    "mfu",
    "step_time",
    "data_wait",
    "compute_time",
    "grad_norm",
    "device_memory_bytes",
)


def wandb_key() -> str | None:
    """The stored W&B key (secrets.py, written by the shell helper), or WANDB_API_KEY."""
    try:
        from nanochat_tui.secrets import get_secret

        key = get_secret("wandb")
    except Exception:
        key = None
    return key or os.environ.get("WANDB_API_KEY") or None


def network_ok(host: str = "api.wandb.ai", port: int = 443, timeout: float = 1.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def choose_mode(requested: str, key: str | None) -> str:
    """auto → online with a key and network, else offline. WANDB_MODE=offline always wins."""
    if os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return os.environ["WANDB_MODE"]
    if requested == "offline" or not key:
        return "offline"
    if requested == "online":
        return "online"
    return "online" if network_ok() else "offline"


# wandb's package imports itself in pieces: two threads importing it at once (two runs' sinks
# starting together) can get a partially initialised module ("has no attribute 'errors'").
_IMPORT_LOCK = threading.Lock()


def import_wandb() -> Any:
    """``import wandb``, one thread at a time. An import that fails half-way (CPython 3.11 can
    raise ``SystemError: AST constructor recursion depth mismatch`` when two threads compile
    source at once, e.g. on a first run without bytecode) leaves wandb's submodules in
    ``sys.modules``; every later import would then get a half-built package ("partially
    initialized module 'wandb' has no attribute ..."). Dropping them lets the sink's next retry
    import it from scratch."""
    with _IMPORT_LOCK:
        try:
            import wandb

            wandb.Settings  # noqa: B018 (a half-built package fails here)
            wandb.init  # noqa: B018
            return wandb
        except Exception:
            for name in [n for n in sys.modules if n == "wandb" or n.startswith("wandb.")]:
                del sys.modules[name]
            raise


class WandbSink:
    name = "wandb"

    def __init__(self, run_dir: Path, config: Any, run_name: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.run_name = run_name or getattr(config.run, "name", None) or self.run_dir.name
        self.mode: str | None = None
        self._run: Any = None
        self._finished = False

    def _init(self) -> None:
        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.setdefault("WANDB_CONSOLE", "off")
        wandb = import_wandb()
        cfg = self.config.telemetry.wandb
        key = wandb_key()
        self.mode = choose_mode(cfg.mode, key)
        settings = wandb.Settings(
            console="off",
            silent=True,
            api_key=key if self.mode == "online" else None,
            x_disable_stats=True,
        )
        try:
            self._run = self._start(wandb, cfg, settings)
        except Exception:
            if self.mode != "online":
                raise
            # Online failed (bad key, firewall): keep the data in an offline run instead.
            self.mode = "offline"
            settings = wandb.Settings(console="off", silent=True, x_disable_stats=True)
            self._run = self._start(wandb, cfg, settings)

    def _start(self, wandb: Any, cfg: Any, settings: Any) -> Any:
        return wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            name=self.run_name,
            dir=str(self.run_dir),
            mode=self.mode,
            config=self.config.model_dump(mode="json"),
            settings=settings,
            reinit="create_new",
        )

    def handle(self, event: Event) -> None:
        if self._finished:
            return
        if self._run is None:
            self._init()
        kind = event.get("type")
        step = event.get("step")
        data: dict[str, Any] = {}
        if kind == "step":
            data = {f"train/{k}": event[k] for k in STEP_KEYS if event.get(k) is not None}
        elif kind == "eval":
            data = {
                f"val/{k}": event[k] for k in ("val_bpb", "val_loss") if event.get(k) is not None
            }
        elif kind == "patch" and event.get("ok"):
            data = {
                f"patch/{k}": v
                for k, v in (event.get("changes") or {}).items()
                if isinstance(v, int | float)
            }
        elif kind == "run_start":
            for key in ("num_params", "flops_per_token", "num_iterations", "device", "peak_flops"):
                if event.get(key) is not None:
                    self._run.summary[key] = event[key]
        elif kind == "run_end":
            self._run.summary["status"] = event.get("status")
            if event.get("final_val_bpb") is not None:
                self._run.summary["final_val_bpb"] = event["final_val_bpb"]
            self._finish(0 if event.get("status") != "failed" else 1)
            return
        if data:
            if isinstance(step, int):
                self._run.log(data, step=step)
            else:
                self._run.log(data)

    def _finish(self, exit_code: int = 0) -> None:
        if self._run is not None and not self._finished:
            self._finished = True
            self._run.finish(exit_code=exit_code)

    def close(self) -> None:
        self._finish()

    def offline_dirs(self) -> list[Path]:
        return sorted((self.run_dir / "wandb").glob("offline-run-*"))
