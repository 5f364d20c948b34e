"""OpenAI request bodies → validated ``Sampling`` settings and prompts, and OpenAI-shaped errors.

Every field is checked for its type and range (NaN and infinities included) and refused with a
400 that names it in ``param``; fields we cannot honour (``n`` > 1, tools, ``echo``, ``best_of``,
JSON mode, non-text content parts, tool roles) are refused the same way rather than ignored.
Unknown fields are ignored (clients send ``user``, ``metadata``, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from nanochat_tui.sampling_params import LIMITS


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
    max_logit_bias: int = 300  # entries in one request's ``logit_bias``


MAX_DEPTH = 32  # deepest nesting a request body may have (OpenAI's own bodies need under 10)
MAX_SEED = 2**31 - 1  # seeds are int32 on the device
MAX_TOP_LOGPROBS = {"chat": 20, "text": 5}  # OpenAI's bounds: top_logprobs (chat), logprobs


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
    logprobs: int | None = None  # None: no logprobs; k: the sampled token's and k alternatives
    logit_bias: dict[int, float] = field(default_factory=dict)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


CHAT_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}

# fields we cannot honour, refused unless they hold their do-nothing value (None always is)
UNSUPPORTED: dict[str, tuple[tuple[object, ...], str]] = {
    "tools": (
        ([],),
        "tool calls are not served yet (`nanochat-tui chat` runs the calculator tool); "
        "send the request without 'tools'",
    ),
    "tool_choice": (("none",), "tool calls are not served yet; send 'tool_choice' only as 'none'"),
    "functions": (([],), "function calls are not served; send the request without 'functions'"),
    "function_call": (("none",), "function calls are not served; leave 'function_call' out"),
    "parallel_tool_calls": ((), "tool calls are not served yet; leave 'parallel_tool_calls' out"),
    "echo": ((False,), "'echo' is not supported; prepend the prompt to the reply yourself"),
    "best_of": ((1,), "'best_of' must be 1 (one candidate per request)"),
    "suffix": (("",), "'suffix' (insertion) is not supported; leave it out"),
    "response_format": (
        ({"type": "text"},),
        'only \'response_format\' {"type": "text"} is supported (no JSON mode)',
    ),
}


def show(value: Any, width: int = 60) -> str:
    """A short description of a client's value for an error message: scalars quoted up to
    ``width`` characters, containers by their type (a nested one could be huge or very deep)."""
    if isinstance(value, dict | list):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def parse_json(raw: bytes, limits: Limits) -> dict[str, Any]:
    if len(raw) > limits.max_body_bytes:
        raise APIError(
            413, f"request body is {len(raw)} bytes; the limit is {limits.max_body_bytes}"
        )
    try:
        body = json.loads(raw)
    except RecursionError:
        body = None  # deeper than Python's recursion limit: refused below like any deep body
        depth = MAX_DEPTH + 1
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError, and ints over 4300 digits
        raise APIError(400, f"request body is not valid JSON: {err}") from None
    else:
        depth = _depth(body)
    if depth > MAX_DEPTH:
        raise APIError(400, f"request body is nested more than {MAX_DEPTH} levels deep")
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object")
    return body


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (a scalar: 0), walked without recursion."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict | list):
            level += 1
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                todo.extend((v, level) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _number(body: dict, name: str, default: float, lo: float, hi: float, *, lo_open=False) -> float:
    """A finite number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``); NaN and infinities fail."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise APIError(400, f"'{name}' must be a number, got {show(value)}", param=name)
    if not lo <= value <= hi or (lo_open and value == lo):  # NaN fails the comparison too
        bound = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        raise APIError(400, f"'{name}' must be in {bound}, got {show(value)}", param=name)
    return float(value)


def _integer(body: dict, name: str, lo: int, hi: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise APIError(400, f"'{name}' must be an integer, got {show(value)}", param=name)
    if not lo <= value <= hi:
        raise APIError(400, f"'{name}' must be in [{lo}, {hi}], got {show(value)}", param=name)
    return value


def refuse_unsupported(body: dict) -> None:
    """400 for a field we would otherwise silently ignore (see ``UNSUPPORTED``)."""
    for name, (harmless, why) in UNSUPPORTED.items():
        value = body.get(name)
        if value is not None and not any(
            type(value) is type(ok) and value == ok for ok in harmless
        ):
            raise APIError(400, f"{why} (got {show(value)})", param=name)


def parse_sampling(body: dict, limits: Limits, kind: str, vocab_size: int) -> Sampling:
    """The sampling, logprobs and streaming fields of both endpoints (``kind``: "chat" or
    "text"); token ids in ``logit_bias`` must be below ``vocab_size``."""
    refuse_unsupported(body)
    n = _integer(body, "n", 1, 2**63)
    if n not in (None, 1):
        raise APIError(400, f"'n' must be 1 (one choice per request), got {n}", param="n")
    max_tokens = _integer(body, "max_completion_tokens", 1, limits.max_tokens)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1, limits.max_tokens)
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
    include_usage = (options or {}).get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise APIError(
            400,
            "'stream_options.include_usage' must be true or false",
            param="stream_options.include_usage",
        )
    return Sampling(
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        top_k=_integer(body, "top_k", 0, int(LIMITS["top_k"].hi)) or 0,
        max_tokens=max_tokens,
        stop=stops,
        seed=_integer(body, "seed", 0, MAX_SEED),
        stream=stream,
        include_usage=include_usage,
        logprobs=_logprobs(body, kind),
        logit_bias=_logit_bias(body, limits, vocab_size),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
    )


def _logprobs(body: dict, kind: str) -> int | None:
    """How many alternatives to report per token, or None for no logprobs. Chat: ``logprobs``
    true/false and ``top_logprobs`` 0..20; completions: ``logprobs`` 0..5."""
    top = MAX_TOP_LOGPROBS[kind]
    if kind == "text":
        return _integer(body, "logprobs", 0, top)
    wanted = body.get("logprobs")
    if wanted is not None and not isinstance(wanted, bool):
        raise APIError(
            400, f"'logprobs' must be true or false, got {show(wanted)}", param="logprobs"
        )
    alternatives = _integer(body, "top_logprobs", 0, top)
    if alternatives is not None and not wanted:
        raise APIError(400, "'top_logprobs' needs 'logprobs' set to true", param="top_logprobs")
    return (alternatives or 0) if wanted else None


def _logit_bias(body: dict, limits: Limits, vocab_size: int) -> dict[int, float]:
    """``{"token id": bias}`` with ids below ``vocab_size`` and biases in [-100, 100]."""
    bias = body.get("logit_bias")
    if bias is None:
        return {}
    if not isinstance(bias, dict):
        raise APIError(
            400, "'logit_bias' must be an object of token id -> bias", param="logit_bias"
        )
    if len(bias) > limits.max_logit_bias:
        raise APIError(
            400,
            f"'logit_bias' has {len(bias)} entries; at most {limits.max_logit_bias} are allowed",
            param="logit_bias",
        )
    out = {}
    for key, value in bias.items():
        if not (key.isascii() and key.isdigit() and len(key) < 10) or int(key) >= vocab_size:
            raise APIError(
                400,
                f"'logit_bias' key {show(key)} is not a token id (0 to {vocab_size - 1})",
                param="logit_bias",
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise APIError(
                400, f"'logit_bias[{key}]' must be a number, got {show(value)}", param="logit_bias"
            )
        if not -100 <= value <= 100:
            raise APIError(
                400, f"'logit_bias[{key}]' must be in [-100, 100], got {show(value)}",
                param="logit_bias",
            )  # fmt: skip
        out[int(key)] = float(value)
    return out


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
        role = CHAT_ROLES.get(m.get("role")) if isinstance(m.get("role"), str) else None
        if role is None:
            raise APIError(
                400,
                f"'{where}.role' is {show(m.get('role'))}; "
                "supported: system, developer, user, assistant",
                param=f"{where}.role",
            )
        for name in ("tool_calls", "function_call"):
            if m.get(name) is not None:
                raise APIError(
                    400,
                    f"'{where}.{name}': tool calls are not served yet; send their text as content",
                    param=f"{where}.{name}",
                )
        out.append({"role": role, "content": _text(m.get("content"), f"{where}.content")})
    return out


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = show(part.get("type")) if isinstance(part, dict) else show(part)
                raise APIError(
                    400, f"'{where}' has a {kind} part; only text parts are supported", param=where
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise APIError(
                    400, f"'{where}[{i}].text' must be a string, got {show(text)}", param=where
                )
            parts.append(text)
        return "".join(parts)
    raise APIError(
        400, f"'{where}' must be a string or a list of text parts, got {show(content)}", param=where
    )


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
