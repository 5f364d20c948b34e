"""A bounded fuzz of the server's request bodies over real HTTP on 127.0.0.1 (issue 25).

Every field of both completion routes gets values of every JSON type, out of range, NaN and
infinities (Python's JSON writes and reads the literals), huge integers, deep nesting and huge
strings, one field at a time and then several at once (seeded); raw bodies add what no JSON
library writes (nesting deeper than the recursion limit, 5000-digit numbers, invalid UTF-8).
Whatever a request holds, the answer is a 2xx or an OpenAI-shaped 4xx (never a 5xx), a normal
request succeeds right after it, and at the end the engine is alive with ``errors_total`` 0.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import pytest

from export_helpers import make_run
from nanochat_tui.serve.server import BackgroundServer, load_state


def nested(depth: int, leaf: object = 1) -> object:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


INF = float("inf")
VALUES: list[object] = [
    None, True, False, 0, 1, -1, 2, 5, 21, 2**31 - 1, 2**31, -(2**31) - 1, 2**63, 10**40,
    0.5, -0.0, 1e-45, 1e308, float("nan"), INF, -INF, "", "x", "NaN", "1", "\x00", "é" * 3000,
    [], [1], ["a", "b"], [None], {}, {"a": 1}, {"type": "text"}, {"type": "json_object"},
    nested(20), nested(40), nested(200),
]  # fmt: skip
MESSAGE_VALUES: list[object] = [
    {"role": "user"},
    {"role": "user", "content": None},
    {"role": "user", "content": 5},
    {"role": "user", "content": [{"type": "text", "text": None}]},
    {"role": "user", "content": [{"type": "text", "text": nested(30)}]},
    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
    {"role": "user", "content": ["text"]},
    {"role": ["user"], "content": "hi"},
    {"role": {"a": 1}, "content": "hi"},
    {"role": "tool", "content": "hi", "tool_call_id": "1"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function"}]},
    {"role": "user", "content": "word " * 5000},
]
LOGIT_BIAS_VALUES: list[object] = [
    {"1": 5}, {"-1": 5}, {"1.5": 5}, {"99999999999999999999": 1}, {"1": float("nan")},
    {"1": 101}, {"1": "5"}, {"1": True}, {"1": None}, {"０": 1}, {str(i): 1 for i in range(301)},
]  # fmt: skip
FIELDS = [
    "model", "messages", "prompt", "temperature", "top_p", "top_k", "seed", "n", "max_tokens",
    "max_completion_tokens", "stop", "stream", "stream_options", "logprobs", "top_logprobs",
    "logit_bias", "presence_penalty", "frequency_penalty", "tools", "tool_choice", "functions",
    "echo", "best_of", "response_format", "suffix", "user",
]  # fmt: skip
ROUTES = {
    "chat/completions": {"messages": [{"role": "user", "content": "Hi"}]},
    "completions": {"prompt": "Hi"},
}
RAW_BODIES: list[bytes] = [
    b'{"model": "fuzz", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"model": "fuzz", "prompt": "Hi", "temperature": ' + b"1" * 5000 + b"}",
    b'{"model": "fuzz", "prompt": "Hi", "seed": ' + b"9" * 4000 + b"}",
    b'{"model": "fuzz", "prompt": "Hi", "top_p": NaN, "temperature": -Infinity}',
    b'{"model": "fuzz", "prompt": "\xff\xfe"}',
    b'{"model": "fuzz", "prompt": "Hi", "prompt": [1, 2]}',
    b'{"model": "fuzz", "prompt": "Hi"',
    b"[]",
    b"null",
    b"",
    b'"just a string"',
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home: Path = tmp_path_factory.mktemp("serve-fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(home))
        run_dir = make_run(home / "runs", "fuzz")
    with BackgroundServer(load_state(run_dir, slots=4)) as srv:
        yield srv


def bodies(seed: int = 0, mixed: int = 150):
    """(route, body) pairs: each field with each value, then ``mixed`` seeded multi-field ones."""
    for route, base in ROUTES.items():
        for field in FIELDS:
            values = {"messages": VALUES + [[m] for m in MESSAGE_VALUES]}.get(field, VALUES)
            if field == "logit_bias":
                values = VALUES + LOGIT_BIAS_VALUES
            for value in values:
                yield route, {"model": "fuzz", "max_tokens": 2, **base, field: value}
    rng = random.Random(seed)
    pool = VALUES + LOGIT_BIAS_VALUES + [[m] for m in MESSAGE_VALUES]
    for _ in range(mixed):
        route = rng.choice(list(ROUTES))
        body = {"model": "fuzz", "max_tokens": 2, **ROUTES[route]}
        for field in rng.sample(FIELDS, rng.randint(2, 5)):
            body[field] = rng.choice(pool)
        yield route, body


def check(response: httpx.Response) -> None:
    """A 2xx with a complete body, or an OpenAI-shaped 4xx."""
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
        assert len(error["message"]) < 400  # one readable line, not the client's value echoed
        return
    if response.headers["content-type"].startswith("text/event-stream"):
        assert response.text.endswith("data: [DONE]\n\n") and '"error"' not in response.text
    else:
        assert response.json()["choices"]


def test_no_request_kills_the_engine(server):
    url = server.base_url
    normal = {"model": "fuzz", "prompt": "Hello", "max_tokens": 1, "temperature": 0}
    sent = 0
    with httpx.Client(timeout=120) as http:

        def post(route: str, content: bytes) -> httpx.Response:
            headers = {"content-type": "application/json"}
            return http.post(f"{url}/{route}", content=content, headers=headers)

        cases = [(r, json.dumps(b).encode()) for r, b in bodies()]
        cases += [(r, raw) for raw in RAW_BODIES for r in ROUTES]
        for route, content in cases:
            response = post(route, content)
            try:
                check(response)
                after = post("completions", json.dumps(normal).encode())
                assert after.status_code == 200 and after.json()["choices"][0]["text"] is not None
            except AssertionError as err:
                raise AssertionError(f"after POST /{route} {content[:200]!r}: {err}") from err
            sent += 1
        stats = http.get(url.removesuffix("/v1") + "/stats").json()
    assert sent > 1000
    assert stats["engine_alive"] is True and stats["errors_total"] == 0
    assert stats["active_slots"] == 0 and stats["queued"] == 0
