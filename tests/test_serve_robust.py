"""One request never takes the server down (issue 25, item 3).

Engine level: a request whose settings the device arrays cannot hold (``seed``/``top_k`` of 2**31,
which used to raise ``OverflowError`` in the worker and end it for good) fails alone, and a device
call that raises fails the requests in it while the engine goes on. Over HTTP with the real
``openai`` client: such a failure is a 500-shaped OpenAI error (also mid-stream) counted in
``errors_total``; an engine whose worker died or stopped is reported by ``/health`` and ``/stats``
and completions get a 503 at once instead of hanging.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import jax
import openai
import pytest
from flax import nnx

from export_helpers import make_run
from nanochat_tui.config.schema import ModelConfig
from nanochat_tui.jax_engine.model import GPT
from nanochat_tui.jax_engine.sample import generate
from nanochat_tui.serve.engine import BatchEngine, EngineUnavailable, GenRequest
from nanochat_tui.serve.server import BackgroundServer, load_state

MESSAGES = [{"role": "user", "content": "Once upon a time"}]


@pytest.fixture(scope="module")
def model() -> GPT:
    cfg = ModelConfig(depth=2, aspect_ratio=32, head_dim=32, sequence_len=64, vocab_size=300)
    m = GPT(cfg, rngs=nnx.Rngs(0))
    leaves, treedef = jax.tree.flatten(nnx.state(m, nnx.Param))
    keys = jax.random.split(jax.random.key(1), len(leaves))
    noisy = [jax.random.normal(k, x.shape) * 0.3 for k, x in zip(keys, leaves, strict=True)]
    nnx.update(m, jax.tree.unflatten(treedef, noisy))
    return m


class Collector:
    """A request's ``emit``: its tokens, and the one finish reason."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.reason: str | None = None
        self.done = threading.Event()

    def __call__(self, tok, fin) -> None:
        if fin is None:
            self.tokens.append(tok)
        else:
            assert self.reason is None, "finished twice"
            self.reason = fin
            self.done.set()

    def wait(self) -> tuple[list[int], str | None]:
        assert self.done.wait(120), "the request never finished (the engine thread is gone?)"
        return self.tokens, self.reason


def submit(engine: BatchEngine, ids: list[int], n: int, **kw) -> tuple[GenRequest, Collector]:
    out = Collector()
    req = GenRequest(ids=ids, max_tokens=n, emit=out, **kw)
    engine.submit(req)
    return req, out


def test_unrepresentable_settings_fail_that_request_alone(model):
    prompt = [1, 5, 7, 9]
    want = list(generate(model, prompt, max_new_tokens=8, temperature=0))
    engine = BatchEngine(model, slots=4)
    # queued before the worker starts: all four are admitted and prefilled in one batch
    bad_seed, bad_seed_out = submit(engine, prompt, 8, temperature=1.0, seed=2**31)
    _, good_out = submit(engine, prompt, 8, temperature=0)
    bad_k, bad_k_out = submit(engine, prompt, 8, temperature=1.0, top_k=2**31)
    nan, nan_out = submit(engine, prompt, 8, temperature=float("nan"))
    engine.start()
    try:
        assert good_out.wait() == (want, "length")
        for req, out in ((bad_seed, bad_seed_out), (bad_k, bad_k_out)):
            assert out.wait() == ([], "error")
            assert "OverflowError" in req.error
        assert nan_out.wait() == ([], "error") and "finite" in nan.error
        assert engine.health() is None and engine.load() == (0, 0)
        assert submit(engine, prompt, 8, temperature=0)[1].wait() == (want, "length")
    finally:
        engine.stop()


def test_a_failing_device_call_fails_its_requests_and_the_engine_goes_on(model, monkeypatch):
    prompt = [3, 1, 4, 1, 5]
    want = list(generate(model, prompt, max_new_tokens=6, temperature=0))
    engine = BatchEngine(model, slots=2)
    real_step, calls = engine._step, []

    def step(*args, **kw):  # the device step fails once, as an out-of-memory would
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("RESOURCE_EXHAUSTED: out of memory")
        return real_step(*args, **kw)

    monkeypatch.setattr(engine, "_step", step)
    first, first_out = submit(engine, prompt, 6, temperature=0)
    second, second_out = submit(engine, [2, 7], 6, temperature=0)
    engine.start()
    try:
        for req, out in ((first, first_out), (second, second_out)):
            tokens, reason = out.wait()
            assert reason == "error" and len(tokens) == 2  # prefill's token and one step's
            assert "RESOURCE_EXHAUSTED" in req.error
        assert engine.health() is None and engine.load() == (0, 0)
        assert submit(engine, prompt, 6, temperature=0)[1].wait() == (want, "length")
    finally:
        engine.stop()


def test_a_dead_worker_fails_what_it_held_and_refuses_new_work(model, monkeypatch):
    engine = BatchEngine(model, slots=2)

    def die() -> None:
        raise SystemExit("pulled the plug")  # not an Exception: the worker loop does not catch it

    monkeypatch.setattr(engine, "_advance", die)
    req, out = submit(engine, [1, 2, 3], 5, temperature=0)
    engine.start()
    assert out.wait()[1] == "unavailable"
    assert "SystemExit" in req.error and "pulled the plug" in engine.health()
    with pytest.raises(EngineUnavailable, match="died"):
        submit(engine, [1, 2, 3], 5)
    engine.stop()


# ------------------------------------------------------------------ over HTTP


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("serve-robust")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(home))
        return make_run(home / "runs", "robust")


def _stats(srv: BackgroundServer) -> dict:
    return httpx.get(srv.base_url.removesuffix("/v1") + "/stats").json()


def _health(srv: BackgroundServer) -> httpx.Response:
    return httpx.get(srv.base_url.removesuffix("/v1") + "/health")


def test_engine_failure_is_a_500_and_counted_then_serving_goes_on(run_dir, monkeypatch):
    with BackgroundServer(load_state(run_dir, slots=2)) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        kw = dict(model="robust", messages=MESSAGES, temperature=0, max_tokens=6)
        want = client.chat.completions.create(**kw).choices[0].message.content
        engine = srv.state.engine
        real_step = engine._step

        def step(*args, **kw):
            raise RuntimeError("RESOURCE_EXHAUSTED: out of memory")

        monkeypatch.setattr(engine, "_step", step)
        with pytest.raises(openai.InternalServerError) as err:
            client.chat.completions.create(**kw)
        assert err.value.status_code == 500 and err.value.type == "server_error"
        assert "RESOURCE_EXHAUSTED" in err.value.message
        with pytest.raises(openai.APIError, match="RESOURCE_EXHAUSTED"):  # mid-stream
            for _ in client.chat.completions.create(**kw, stream=True):
                pass
        monkeypatch.setattr(engine, "_step", real_step)
        assert client.chat.completions.create(**kw).choices[0].message.content == want
        stats = _stats(srv)
        assert stats["errors_total"] == 2 and stats["engine_alive"] is True
        assert stats["active_slots"] == 0
        assert _health(srv).json()["status"] == "ok"


def test_dead_or_stopped_engine_is_reported_and_completions_get_503_at_once(run_dir, monkeypatch):
    with BackgroundServer(load_state(run_dir, slots=2)) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0, timeout=30)
        engine = srv.state.engine
        assert _health(srv).status_code == 200 and _stats(srv)["engine_alive"] is True

        def die() -> None:
            raise SystemExit("pulled the plug")

        monkeypatch.setattr(engine, "_advance", die)
        kw = dict(model="robust", messages=MESSAGES, temperature=0, max_tokens=6)
        with pytest.raises(openai.InternalServerError) as err:  # the request it held: no hang
            client.chat.completions.create(**kw)
        assert err.value.status_code == 503 and "pulled the plug" in err.value.message
        health = _health(srv)
        assert health.status_code == 503 and "SystemExit" in health.json()["error"]
        stats = _stats(srv)
        assert stats["engine_alive"] is False and "pulled the plug" in stats["engine_error"]
        for call in (
            lambda: client.chat.completions.create(**kw),
            lambda: client.completions.create(model="robust", prompt="Hi", stream=True),
        ):
            start = time.monotonic()
            with pytest.raises(openai.InternalServerError) as err:
                call()
            assert err.value.status_code == 503 and time.monotonic() - start < 5
        assert client.models.list().data[0].id == "robust"


def test_stopped_engine_gives_503(run_dir):
    with BackgroundServer(load_state(run_dir, slots=1)) as srv:
        srv.state.engine.stop()
        client = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0, timeout=30)
        with pytest.raises(openai.InternalServerError) as err:
            client.completions.create(model="robust", prompt="Hi", max_tokens=2)
        assert err.value.status_code == 503 and "stopped" in err.value.message
        assert _health(srv).json() == {"status": "unavailable", "error": "the engine is stopped"}
