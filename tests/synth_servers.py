"""Servers and a project for the synthetic-data tests: our own ``serve`` on a tiny trained
checkpoint, a scripted OpenAI-shaped Starlette server that injects 429/5xx/401/malformed replies
and records request times, and a project with a SOUL written in the documented layout."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from helpers import tiny

SOUL = """# Testy

## Persona
A test assistant.

## Principles

### Be brief
Answer briefly.
Critique: Find one flaw.
Revision: Fix it briefly.

### Be kind
Answer kindly.
Critique: Is it unkind?
Revision: Say it kindly.
"""


def make_project(home: Path, name: str = "demo", soul: str = SOUL) -> Path:
    """Project ``name`` (under ``home``, the test's NANOCHAT_TUI_HOME) with ``soul`` as v0001."""
    from nanochat_tui import projects

    assert projects.projects_dir().is_relative_to(home)
    return projects.create_project(name, soul).path


def write_prompts(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"prompt": f"Tell me fact {i}."}) + "\n" for i in range(n)))
    return path


def train_tiny(home: Path, name: str = "synthsrv") -> Path:
    """A tiny checkpoint with a 128-token context (a critique/revision conversation fits)."""
    import pytest

    from nanochat_tui.config import load_config
    from nanochat_tui.jax_engine.train import train

    changes = {
        "train.num_iterations": 3,
        "run.name": name,
        "model.sequence_len": 128,
        "train.device_batch_size": 2,
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(home))
        config = load_config("tiny", tiny(changes))
        run_dir = home / "runs" / name
        assert train(config, run_dir, lambda event: None).status == "finished"
    return run_dir


class ThreadServer:
    """uvicorn serving a Starlette app on 127.0.0.1 from a thread (a free port)."""

    def __init__(self, app) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    @property
    def base_url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def completion(text: str, prompt_tokens: int = 10, completion_tokens: int = 5) -> dict:
    return {
        "id": "x",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class Scripted:
    """An OpenAI-shaped chat endpoint whose n-th request gets ``script(n, body, headers)``
    (a Starlette response), defaulting to a plain completion. Records (time, body, headers)."""

    def __init__(self, script: Callable | None = None) -> None:
        self.script = script or (lambda n, body, headers: None)
        self.calls: list[tuple[float, dict, dict]] = []
        self.lock = threading.Lock()
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    async def chat(self, request: Request):
        body = await request.json()
        with self.lock:
            n = len(self.calls)
            self.calls.append((time.monotonic(), body, dict(request.headers)))
        response = self.script(n, body, dict(request.headers))
        if response is not None:
            return response
        last = body["messages"][-1]["content"]
        return JSONResponse(completion(f"reply {n} to {last[:20]}"))

    def times(self) -> list[float]:
        return [t for t, _, _ in self.calls]


def error(status: int, message: str, retry_after: str | None = None) -> JSONResponse:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    body = {"error": {"message": message, "type": "error", "param": None, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)
