"""Load a checkpoint into a ``ServeState`` and run it under uvicorn (blocking or in a thread)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import uvicorn

from nanochat_tui.serve.app import ServeState, create_app
from nanochat_tui.serve.engine import BatchEngine
from nanochat_tui.serve.protocol import Limits


def load_state(
    path: Path | str,
    *,
    slots: int = 8,
    max_queue: int = 64,
    limits: Limits | None = None,
    api_key: str | None = None,
    model_id: str | None = None,
) -> ServeState:
    """Load ``path`` (a run dir → its latest checkpoint, or a step dir) and build its engine."""
    from nanochat_tui.jax_engine.inference import ChatModel

    cm = ChatModel.load(path)
    engine = BatchEngine(cm.model, slots=slots, max_queue=max_queue)
    return ServeState(
        model_id=model_id or cm.path.parent.parent.name,
        tokenizer=cm.tokenizer,
        engine=engine,
        limits=limits or Limits(),
        api_key=api_key,
    )


def api_key_from_env(name: str | None) -> str | None:
    """The bearer key from environment variable ``name`` (never printed)."""
    from nanochat_tui.secrets import secret_from_env

    if not name:
        return None
    return secret_from_env(name, "--api-key-env", "drop --api-key-env")


class BackgroundServer:
    """uvicorn serving ``state`` on ``host:port`` from a thread (``port=0`` picks a free port)."""

    def __init__(self, state: ServeState, host: str = "127.0.0.1", port: int = 0) -> None:
        config = uvicorn.Config(
            create_app(state), host=host, port=port, log_level="warning", lifespan="on"
        )
        self.state = state
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="serve-http", daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
