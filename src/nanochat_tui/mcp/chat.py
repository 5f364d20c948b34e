"""The ``chat`` tool: load a checkpoint once (JAX is imported here, on first use) and reply."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from nanochat_tui import rundir
from nanochat_tui.errors import UserError
from nanochat_tui.mcp.tools import resolve_run

ROLES = ("system", "user", "assistant")
_lock = threading.Lock()
_loaded: dict[str, Any] = {}  # step dir -> ChatModel; one model kept (the last one used)


def _step_dir(checkpoint: str) -> Path:
    path = Path(checkpoint).expanduser()
    if path.is_dir() and (path / rundir.META_ITEM).is_dir():
        return path
    run_dir = resolve_run(checkpoint)
    latest = rundir.latest_checkpoint(run_dir)
    if latest is None:
        raise UserError(
            f"run {run_dir.name} has no checkpoint yet",
            "wait for one (control_run action=checkpoint asks for one now) or pick another run",
        )
    return latest.path


def _model(step_dir: Path):
    from nanochat_tui.jax_engine.inference import ChatModel

    key = str(step_dir.resolve())
    with _lock:
        if key not in _loaded:
            _loaded.clear()
            from nanochat_tui.orchestrator.plugin_hooks import model_mlp

            _loaded[key] = ChatModel.load(step_dir, mlp_for=model_mlp)
        return _loaded[key]


def _check_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    if not messages:
        raise UserError("messages is empty", 'pass e.g. [{"role": "user", "content": "hi"}]')
    out = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role not in ROLES or not isinstance(content, str):
            raise UserError(
                f"messages[{i}] needs a role ({', '.join(ROLES)}) and a string content",
                'e.g. {"role": "user", "content": "hi"}',
            )
        out.append({"role": role, "content": content})
    if out[-1]["role"] != "user":
        raise UserError("the last message must be the user's", "end messages with a user turn")
    return out


def chat(
    checkpoint: str,
    messages: list[dict[str, Any]] | None,
    prompt: str | None,
    max_tokens: int,
    temperature: float,
    seed: int,
) -> dict[str, Any]:
    """Reply to ``messages`` (chat) or continue ``prompt`` (a document, for base models)."""
    if (messages is None) == (prompt is None):
        raise UserError(
            "pass exactly one of messages or prompt", "messages to chat, prompt to continue text"
        )
    checked = _check_messages(messages) if messages is not None else None
    step_dir = _step_dir(checkpoint)
    model = _model(step_dir)
    kwargs = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed}
    pieces = (
        model.chat(checked, **kwargs) if checked is not None else model.complete(prompt, **kwargs)
    )
    text = "".join(pieces)
    stats = model.last_stats
    return {
        "checkpoint": str(step_dir),
        "step": model.step,
        "text": text,
        "prompt_tokens": stats.get("prompt_tokens"),
        "completion_tokens": stats.get("completion_tokens"),
    }
