"""OpenAI request bodies → validated ``Sampling`` settings and prompts, and OpenAI-shaped errors.

Unknown fields are ignored (clients send ``user``, ``metadata``, ...); fields we cannot honour
(``n`` > 1, non-text content parts, tool roles) are refused with a message naming them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class APIError(Exception):
    """An error the client sees as ``{"error": {message, type, param, code}}`` with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass
class Limits:
    """Request limits the server enforces (CLI flags)."""

    max_body_bytes: int = 1 << 20
    max_messages: int = 256
    max_tokens: int = 1024  # per request; also capped by the model's context
    max_stops: int = 4


@dataclass
class Sampling:
    temperature: float
    top_p: float
    top_k: int
    max_tokens: int | None  # None: fill the context (up to Limits.max_tokens)
    stop: list[str]
    seed: int | None
    stream: bool
    include_usage: bool


CHAT_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def parse_json(raw: bytes, limits: Limits) -> dict[str, Any]:
    if len(raw) > limits.max_body_bytes:
        raise APIError(
            413, f"request body is {len(raw)} bytes; the limit is {limits.max_body_bytes}"
        )
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise APIError(400, f"request body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object")
    return body


def _number(body: dict, name: str, default: float, lo: float, hi: float, *, lo_open=False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise APIError(400, f"'{name}' must be a number, got {value!r}", param=name)
    if value > hi or value < lo or (lo_open and value == lo):
        bound = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        raise APIError(400, f"'{name}' must be in {bound}, got {value}", param=name)
    return float(value)


def _integer(body: dict, name: str, lo: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise APIError(400, f"'{name}' must be an integer, got {value!r}", param=name)
    if value < lo:
        raise APIError(400, f"'{name}' must be >= {lo}, got {value}", param=name)
    return value


def parse_sampling(body: dict, limits: Limits) -> Sampling:
    """The sampling and streaming fields shared by both endpoints."""
    n = _integer(body, "n", 1)
    if n not in (None, 1):
        raise APIError(400, f"'n' must be 1 (one choice per request), got {n}", param="n")
    max_tokens = _integer(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1)
    if max_tokens is not None and max_tokens > limits.max_tokens:
        raise APIError(
            400,
            f"max_tokens is {max_tokens}; this server allows at most {limits.max_tokens}",
            param="max_tokens",
        )
    stop = body.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    else:
        raise APIError(400, "'stop' must be a string or a list of strings", param="stop")
    if len(stops) > limits.max_stops:
        raise APIError(400, f"'stop' allows at most {limits.max_stops} strings", param="stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, "'stream' must be true or false", param="stream")
    options = body.get("stream_options")
    if options is not None and not stream:
        raise APIError(
            400, "'stream_options' is only allowed when 'stream' is true", param="stream_options"
        )
    if options is not None and not isinstance(options, dict):
        raise APIError(400, "'stream_options' must be an object", param="stream_options")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise APIError(400, f"'seed' must be an integer, got {seed!r}", param="seed")
    return Sampling(
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        top_k=_integer(body, "top_k", 0) or 0,
        max_tokens=max_tokens,
        stop=stops,
        seed=seed,
        stream=stream,
        include_usage=bool((options or {}).get("include_usage", False)),
    )


def parse_messages(body: dict, limits: Limits) -> list[dict[str, str]]:
    """``messages`` as ``[{role, content}]`` with text content, roles mapped to ours."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "'messages' must be a non-empty list", param="messages")
    if len(messages) > limits.max_messages:
        raise APIError(
            400,
            f"{len(messages)} messages; this server allows at most {limits.max_messages}",
            param="messages",
        )
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise APIError(400, f"'{where}' must be an object", param=where)
        role = CHAT_ROLES.get(m.get("role"))
        if role is None:
            raise APIError(
                400,
                f"'{where}.role' is {m.get('role')!r}; supported: system, developer, user, assistant",
                param=f"{where}.role",
            )
        out.append({"role": role, "content": _text(m.get("content"), f"{where}.content")})
    return out


def _text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise APIError(
                    400,
                    f"'{where}' has a {kind!r} part; only text parts are supported",
                    param=where,
                )
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise APIError(400, f"'{where}' must be a string or a list of text parts", param=where)


def parse_prompt(body: dict) -> str | list[int]:
    """``prompt`` of /v1/completions: a string, a one-string list, or a list of token ids."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
    ):
        return prompt
    raise APIError(
        400, "'prompt' must be a string (or one string in a list, or token ids)", param="prompt"
    )
