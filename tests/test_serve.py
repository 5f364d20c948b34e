"""The OpenAI-compatible server, driven by the real ``openai`` client over 127.0.0.1.

Replies must equal ``jax_engine.sample.generate``'s greedy output token for token, whether one
request runs alone or 32 share the batched decode steps.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import jax
import openai
import pytest
from flax import nnx

from helpers import tiny
from nanochat_tui.jax_engine.model import GPT
from nanochat_tui.jax_engine.sample import generate
from nanochat_tui.serve.app import ServeState
from nanochat_tui.serve.engine import BatchEngine
from nanochat_tui.serve.server import BackgroundServer, load_state


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    from nanochat_tui.config import load_config
    from nanochat_tui.jax_engine.train import train

    home = tmp_path_factory.mktemp("serve-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(home))
        config = load_config("tiny", tiny({"train.num_iterations": 20, "run.name": "served"}))
        run_dir = home / "runs" / "served"
        assert train(config, run_dir, lambda event: None).status == "finished"
    return run_dir


@pytest.fixture(scope="module")
def server(trained_run):
    state = load_state(trained_run, slots=8, max_queue=64)
    with BackgroundServer(state) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def reference(state: ServeState, ids: list[int], stops: tuple[int, ...], n: int) -> list[int]:
    return list(generate(state.engine.model, ids, max_new_tokens=n, temperature=0, stop_ids=stops))


def chat_reference(state: ServeState, messages: list[dict], n: int) -> list[int]:
    tok = state.tokenizer
    ids = tok.render_conversation(messages, for_completion=True)
    stops = (tok.special("assistant_end"), tok.bos_id, tok.special("user_start"))
    return reference(state, ids, stops, n)


MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Once upon a time"},
]


def test_models_lists_the_run(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["served"]
    assert client.models.retrieve("served").id == "served"


def test_chat_greedy_equals_sampler_nonstreaming_and_streaming(server, client):
    state = server.state
    want = chat_reference(state, MESSAGES, 24)
    text = state.tokenizer.decode(want)
    reply = client.chat.completions.create(
        model="served", messages=MESSAGES, temperature=0, max_tokens=24
    )
    assert reply.choices[0].message.content == text
    assert reply.choices[0].finish_reason == ("length" if len(want) == 24 else "stop")
    prompt_len = len(state.tokenizer.render_conversation(MESSAGES, for_completion=True))
    assert reply.usage.prompt_tokens == prompt_len
    assert reply.usage.completion_tokens == len(want)
    assert reply.usage.total_tokens == prompt_len + len(want)

    chunks = list(
        client.chat.completions.create(
            model="served",
            messages=MESSAGES,
            temperature=0,
            max_completion_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    finals = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finals == [reply.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(want)


def test_completions_greedy_equals_sampler(server, client):
    state = server.state
    tok = state.tokenizer
    want = reference(state, [tok.bos_id, *tok.encode("The")], (tok.bos_id,), 20)
    reply = client.completions.create(model="served", prompt="The", temperature=0, max_tokens=20)
    assert reply.choices[0].text == tok.decode(want)
    assert reply.usage.completion_tokens == len(want)
    streamed = client.completions.create(
        model="served", prompt="The", temperature=0, max_tokens=20, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == tok.decode(want)


def test_stop_string_cuts_the_reply(server, client):
    text = server.state.tokenizer.decode(chat_reference(server.state, MESSAGES, 30))
    starts = [i for i in range(2, len(text) - 1) if len(text[i : i + 2].strip()) == 2]
    assert starts, text
    stop = text[starts[0] : starts[0] + 2]
    cut = text[: text.find(stop)]
    kw = dict(model="served", messages=MESSAGES, temperature=0, max_tokens=30, stop=[stop])
    reply = client.chat.completions.create(**kw)
    assert reply.choices[0].message.content == cut
    assert reply.choices[0].finish_reason == "stop"
    chunks = list(client.chat.completions.create(**kw, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == cut
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_sampling_is_seeded(client):
    kw = dict(model="served", messages=MESSAGES, temperature=1.0, top_p=0.9, max_tokens=16)
    a = client.chat.completions.create(**kw, seed=3, extra_body={"top_k": 20})
    b = client.chat.completions.create(**kw, seed=3, extra_body={"top_k": 20})
    assert a.choices[0].message.content == b.choices[0].message.content


def test_errors_are_openai_shaped(server, client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="served", messages=MESSAGES, temperature=3)
    assert err.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="served", messages=MESSAGES, temperature="hot")
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="served", messages=[])
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="served", messages=[{"role": "tool", "content": "x", "tool_call_id": "1"}]
        )
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="served", messages=[{"role": "user", "content": "word " * 200}]
        )
    assert err.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="served", messages=MESSAGES, max_tokens=10_000)
    assert err.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="served", messages=MESSAGES, n=2)
    raw = httpx.post(
        f"{server.base_url}/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert raw.status_code == 400 and "not valid JSON" in raw.json()["error"]["message"]
    missing = httpx.get(f"{server.base_url}/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "invalid_request_error"


def test_api_key_is_required_when_set(trained_run):
    state = load_state(trained_run, slots=2, api_key="s3cret-key")
    with BackgroundServer(state) as srv:
        bad = openai.OpenAI(base_url=srv.base_url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as err:
            bad.models.list()
        assert "s3cret-key" not in str(err.value)
        good = openai.OpenAI(base_url=srv.base_url, api_key="s3cret-key", max_retries=0)
        assert good.models.list().data[0].id == "served"


def test_32_concurrent_streams_share_steps_and_match_greedy(server):
    """Bounded load: 32 streams at once against 8 slots; each equals its solo greedy reply."""
    state = server.state
    prompts = [f"Story number {i}" for i in range(32)]
    wants = [
        state.tokenizer.decode(chat_reference(state, [{"role": "user", "content": p}], 12))
        for p in prompts
    ]
    steps_before = state.engine.steps

    async def one(ac: openai.AsyncOpenAI, prompt: str) -> str:
        stream = await ac.chat.completions.create(
            model="served",
            messages=[{"role": "user", "content": prompt}],
            temperature=0,
            max_tokens=12,
            stream=True,
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream])

    async def main() -> list[str]:
        ac = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        async with ac:
            return await asyncio.wait_for(
                asyncio.gather(*(one(ac, p) for p in prompts)), timeout=120
            )

    got = asyncio.run(main())
    assert got == wants
    # 32 requests x up to 12 tokens, 8 at a time: far fewer device steps than tokens
    assert state.engine.steps - steps_before < 32 * 12 / 2
    stats = httpx.get(server.base_url.removesuffix("/v1") + "/stats").json()
    assert stats["requests_total"] >= 32 and stats["active_slots"] == 0
    assert stats["latency_p50_s"] is not None and stats["tokens_per_s"] > 0


@pytest.fixture(scope="module")
def long_server(server):
    """The served tokenizer on a random-weight model with a 2048-token context and one slot:
    its greedy replies run long enough to disconnect from, or to keep the slot busy."""
    cfg = server.state.engine.model.config.model_copy(update={"sequence_len": 2048})
    model = GPT(cfg, rngs=nnx.Rngs(0))
    leaves, treedef = jax.tree.flatten(nnx.state(model, nnx.Param))
    keys = jax.random.split(jax.random.key(1), len(leaves))
    noisy = [jax.random.normal(k, x.shape) * 0.3 for k, x in zip(keys, leaves, strict=True)]
    nnx.update(model, jax.tree.unflatten(treedef, noisy))
    state = ServeState(
        model_id="long",
        tokenizer=server.state.tokenizer,
        engine=BatchEngine(model, slots=1, max_queue=0),
    )
    with BackgroundServer(state) as srv:
        yield srv


def _wait_idle(srv: BackgroundServer, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while srv.state.engine.load() != (0, 0):
        assert time.monotonic() < deadline, "the slot was not freed"
        time.sleep(0.02)


def test_disconnect_frees_the_slot_and_busy_slots_give_429(long_server):
    client = openai.OpenAI(base_url=long_server.base_url, api_key="x", max_retries=0)
    engine = long_server.state.engine
    kw = dict(model="long", messages=MESSAGES, temperature=0, max_tokens=1000)
    stream = client.chat.completions.create(**kw, stream=True)
    for i, _chunk in enumerate(stream):
        if i == 3:
            break
    assert engine.load() == (1, 0)
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(**kw)
    assert err.value.response.headers["retry-after"] == "1"
    stream.close()
    _wait_idle(long_server)
    steps = engine.steps
    time.sleep(0.3)
    assert engine.steps == steps  # nothing is generating for the gone client
    assert steps < 1000

    # a non-streaming client that gives up frees the slot too
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.5).chat.completions.create(**kw)
    _wait_idle(long_server)
    assert client.models.list().data[0].id == "long"


def test_cli_refuses_bad_flags_with_one_message(tmp_path, monkeypatch, capsys):
    from nanochat_tui.cli import main

    monkeypatch.delenv("NANOCHAT_TEST_KEY", raising=False)
    assert main(["serve", str(tmp_path), "--api-key-env", "NANOCHAT_TEST_KEY"]) == 2
    assert "NANOCHAT_TEST_KEY" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--slots", "0"]) == 2
    assert main(["serve", str(tmp_path)]) == 2
    assert "no checkpoint found" in capsys.readouterr().err
