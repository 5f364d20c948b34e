"""The OpenAI fields the server used to ignore, driven by the real ``openai`` client (issue 25).

Logprobs (chat ``logprobs``/``top_logprobs``, completions ``logprobs``; streamed and not) equal a
NumPy log-softmax of the model's own logits from a full forward pass; ``logit_bias`` and the
presence/frequency penalties equal a NumPy greedy reference of OpenAI's formula, also for rows
with different settings batched in the same decode steps. Fields it cannot honour and values out
of range (NaN, ``seed`` -1 or 2**31, ``content: null``, deep nesting) are a 400 naming ``param``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import jax
import jax.numpy as jnp
import numpy as np
import openai
import pytest
from flax import nnx

from export_helpers import make_run
from nanochat_tui.jax_engine.sample import generate
from nanochat_tui.serve.engine import BatchEngine, GenRequest
from nanochat_tui.serve.server import BackgroundServer, load_state

MESSAGES = [{"role": "user", "content": "Once upon a time"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home: Path = tmp_path_factory.mktemp("serve-fields")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(home))
        run_dir = make_run(home / "runs", "fields")
    with BackgroundServer(load_state(run_dir, slots=4)) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)


@pytest.fixture(scope="module")
def forward(server):
    """Logits ``float32[T, V]`` of a sequence from the model's full forward pass."""
    model = server.state.engine.model
    graphdef, state = nnx.split(model)
    length = model.config.sequence_len
    run = jax.jit(lambda state, idx: nnx.merge(graphdef, state)(idx))

    def logits(ids: list[int]) -> np.ndarray:
        idx = jnp.asarray([ids + [0] * (length - len(ids))], jnp.int32)  # causal: padding after
        return np.asarray(run(state, idx))[0, : len(ids)]

    return logits


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def chat_prompt(server) -> tuple[list[int], tuple[int, ...]]:
    tok = server.state.tokenizer
    ids = tok.render_conversation(MESSAGES, for_completion=True)
    return ids, (tok.special("assistant_end"), tok.bos_id, tok.special("user_start"))


def token_str(tok, idx: int) -> str:
    """OpenAI's token string: the text, or ``bytes:\\x..`` for part of a character."""
    raw = tok.id_to_bytes(idx)
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


def greedy_reference(forward, ids, n, stops, bias=None, presence=0.0, frequency=0.0) -> list[int]:
    """OpenAI's formula in NumPy: logit[j] += bias[j] - count[j]*frequency - (count[j]>0)*presence
    over the tokens generated so far, then argmax."""
    out: list[int] = []
    for _ in range(n):
        logits = forward(ids + out)[-1].copy()
        for t, b in (bias or {}).items():
            logits[t] += b
        for t in set(out):
            logits[t] -= out.count(t) * frequency + presence
        tok = int(np.argmax(logits))
        if tok in stops:
            break
        out.append(tok)
    return out


# ------------------------------------------------------------------ logprobs


def test_chat_logprobs_are_the_models_log_softmax(server, client, forward):
    tok = server.state.tokenizer
    prompt, stops = chat_prompt(server)
    gen = list(generate(server.state.engine.model, prompt, max_new_tokens=8, temperature=0,
                        stop_ids=stops))  # fmt: skip
    kw = dict(model="fields", messages=MESSAGES, temperature=0, max_tokens=8)
    reply = client.chat.completions.create(**kw, logprobs=True, top_logprobs=5)
    content = reply.choices[0].logprobs.content
    assert len(content) == len(gen) == reply.usage.completion_tokens
    logits = forward(prompt + gen)
    for i, entry in enumerate(content):
        want = log_softmax(logits[len(prompt) - 1 + i])
        top = np.argsort(-want)[:5]
        assert entry.bytes == list(tok.id_to_bytes(gen[i]))
        assert entry.logprob == pytest.approx(want[gen[i]], abs=1e-4)
        assert [t.bytes for t in entry.top_logprobs] == [list(tok.id_to_bytes(t)) for t in top]
        np.testing.assert_allclose([t.logprob for t in entry.top_logprobs], want[top], atol=1e-4)
    raw = bytes(b for e in content for b in e.bytes)
    assert raw.decode(errors="replace") == reply.choices[0].message.content

    chunks = list(client.chat.completions.create(**kw, logprobs=True, top_logprobs=5, stream=True))
    streamed = [e for c in chunks if c.choices and c.choices[0].logprobs for e in
                c.choices[0].logprobs.content]  # fmt: skip
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content]
    plain = client.chat.completions.create(**kw)
    assert plain.choices[0].logprobs is None
    assert plain.choices[0].message.content == reply.choices[0].message.content


def test_sampled_tokens_logprobs_are_unscaled_by_temperature(server, client, forward):
    """The sampled token's logprob under the model itself, not the temperature-scaled one."""
    prompt, stops = chat_prompt(server)
    model = server.state.engine.model
    gen = list(generate(model, prompt, max_new_tokens=8, temperature=1.7, seed=7, stop_ids=stops))
    reply = client.chat.completions.create(
        model="fields", messages=MESSAGES, temperature=1.7, seed=7, max_tokens=8, logprobs=True
    )
    content = reply.choices[0].logprobs.content
    assert [e.bytes for e in content] == [list(server.state.tokenizer.id_to_bytes(t)) for t in gen]
    logits = forward(prompt + gen)
    for i, entry in enumerate(content):
        assert entry.top_logprobs == []
        want = log_softmax(logits[len(prompt) - 1 + i])[gen[i]]
        assert entry.logprob == pytest.approx(want, abs=1e-4)


def test_completion_logprobs_in_openais_legacy_shape(server, client, forward):
    tok = server.state.tokenizer
    prompt = [tok.bos_id, *tok.encode("The")]
    gen = list(generate(server.state.engine.model, prompt, max_new_tokens=10, temperature=0,
                        stop_ids=(tok.bos_id,)))  # fmt: skip
    kw = dict(model="fields", prompt="The", temperature=0, max_tokens=10, logprobs=3)
    reply = client.completions.create(**kw)
    lp, text = reply.choices[0].logprobs, reply.choices[0].text
    assert lp.tokens == [token_str(tok, t) for t in gen]
    assert tok.decode(gen) == text
    assert lp.text_offset == [len(tok.decode(gen[:i])) for i in range(len(gen))]
    logits = forward(prompt + gen)
    for i, t in enumerate(gen):
        want = log_softmax(logits[len(prompt) - 1 + i])
        assert lp.token_logprobs[i] == pytest.approx(want[t], abs=1e-4)
        top = {token_str(tok, j): want[j] for j in np.argsort(-want)[:3]}
        top.setdefault(token_str(tok, t), want[t])  # the sampled token is always there
        assert lp.top_logprobs[i].keys() == top.keys()
        for key, value in top.items():
            assert lp.top_logprobs[i][key] == pytest.approx(value, abs=1e-4)
    streamed = list(client.completions.create(**kw, stream=True))
    tokens = [t for c in streamed if c.choices[0].logprobs for t in c.choices[0].logprobs.tokens]
    offsets = [o for c in streamed if c.choices[0].logprobs for o in
               c.choices[0].logprobs.text_offset]  # fmt: skip
    assert tokens == lp.tokens and offsets == lp.text_offset


# ------------------------------------------------------------------ logit_bias and penalties


def test_logit_bias_and_penalties_equal_a_numpy_reference(server, client, forward):
    tok = server.state.tokenizer
    prompt, stops = chat_prompt(server)
    word = tok.encode(" the")[0]
    kw = dict(model="fields", messages=MESSAGES, temperature=0, max_tokens=12)
    forced = client.chat.completions.create(**kw, logit_bias={str(word): 100})
    assert forced.choices[0].message.content == tok.decode([word] * 12)

    plain = greedy_reference(forward, prompt, 12, stops)
    settings = [
        {"frequency_penalty": 2.0, "presence_penalty": 1.0},
        {"presence_penalty": -2.0},
        {"frequency_penalty": 1.5, "logit_bias": {plain[0]: -100, plain[1]: 3.5}},
    ]
    for s in settings:
        bias = s.get("logit_bias", {})
        want = greedy_reference(
            forward, prompt, 12, stops, bias, s.get("presence_penalty", 0.0),
            s.get("frequency_penalty", 0.0),
        )  # fmt: skip
        assert want != plain  # the setting changes the reply, so the comparison means something
        body = {**s, "logit_bias": {str(k): v for k, v in bias.items()}}
        reply = client.chat.completions.create(**kw, **body)
        assert reply.choices[0].message.content == tok.decode(want), s


def test_rows_with_different_settings_share_decode_steps(server, forward):
    """Four requests admitted together (one prefill, then the same steps), each with its own
    penalties, bias and logprobs, each equal to its own reference."""
    model = server.state.engine.model
    engine = BatchEngine(model, slots=4)
    prompts = [[1, 5, 7, 9], [2, 8], [3, 1, 4, 1, 5, 9], [7]]
    settings = [
        {"frequency_penalty": 2.0},
        {"logit_bias": {11: 4.0, 12: -100.0}, "presence_penalty": 0.5},
        {},
        {"frequency_penalty": -1.0, "logprobs": 2},
    ]
    results: list[list[int]] = [[] for _ in prompts]
    done = threading.Barrier(len(prompts) + 1, timeout=300)
    reqs = []
    for i, (prompt, s) in enumerate(zip(prompts, settings, strict=True)):

        def emit(tok, fin, i=i):
            if fin is None:
                results[i].append(tok)
            else:
                threading.Thread(target=done.wait).start()

        reqs.append(GenRequest(ids=prompt, max_tokens=10, emit=emit, temperature=0, **s))
        engine.submit(reqs[-1])
    engine.start()
    try:
        done.wait()
    finally:
        engine.stop()
    assert engine.steps == 9  # one prefill token, then nine shared steps
    for i, (prompt, s) in enumerate(zip(prompts, settings, strict=True)):
        want = greedy_reference(
            forward, prompt, 10, (), s.get("logit_bias"), s.get("presence_penalty", 0.0),
            s.get("frequency_penalty", 0.0),
        )  # fmt: skip
        assert results[i] == want, (i, s)
    logits = forward(prompts[3] + results[3])
    for j, lp in enumerate(reqs[3].token_logprobs):
        want = log_softmax(logits[len(prompts[3]) - 1 + j])
        assert lp.logprob == pytest.approx(want[results[3][j]], abs=1e-4)
        assert [t for t, _ in lp.top] == list(np.argsort(-want)[:2])
    assert all(not r.token_logprobs for r in reqs[:3])


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("route", "fields", "param"),
    [
        ("chat", {"tools": [{"type": "function", "function": {"name": "calc"}}]}, "tools"),
        ("chat", {"tool_choice": "auto"}, "tool_choice"),
        ("chat", {"response_format": {"type": "json_object"}}, "response_format"),
        ("chat", {"top_logprobs": 3}, "top_logprobs"),
        ("chat", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ("chat", {"seed": -1}, "seed"),
        ("chat", {"seed": 2**31}, "seed"),
        ("chat", {"presence_penalty": 2.5}, "presence_penalty"),
        ("chat", {"frequency_penalty": -3}, "frequency_penalty"),
        ("chat", {"logit_bias": {"99999": 1}}, "logit_bias"),
        ("chat", {"logit_bias": {"5": 100.5}}, "logit_bias"),
        ("chat", {"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
        ("chat", {"messages": [{"role": "assistant", "tool_calls": []}]}, "messages[0].tool_calls"),
        ("text", {"echo": True}, "echo"),
        ("text", {"best_of": 2}, "best_of"),
        ("text", {"logprobs": 6}, "logprobs"),
        ("text", {"suffix": "end"}, "suffix"),
    ],
)
def test_unhonoured_fields_and_bad_values_are_400_with_param(client, route, fields, param):
    with pytest.raises(openai.BadRequestError) as err:
        if route == "chat":
            body = {"messages": MESSAGES, **fields}
            client.chat.completions.create(model="fields", max_tokens=2, **body)
        else:
            client.completions.create(model="fields", prompt="Hi", max_tokens=2, **fields)
    assert err.value.param == param, err.value.message


def test_harmless_values_of_those_fields_are_accepted(client):
    reply = client.chat.completions.create(
        model="fields", messages=MESSAGES, max_tokens=2, response_format={"type": "text"},
        tool_choice="none", seed=2**31 - 1, logprobs=False,
    )  # fmt: skip
    assert reply.choices[0].logprobs is None
    done = client.completions.create(model="fields", prompt="Hi", max_tokens=2, echo=False,
                                     best_of=1, logprobs=0)  # fmt: skip
    assert len(done.choices[0].logprobs.token_logprobs) == done.usage.completion_tokens


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'"temperature": NaN', "temperature"),
        (b'"top_p": NaN', "top_p"),
        (b'"temperature": Infinity', "temperature"),
        (b'"top_k": 2147483648', "top_k"),
        (b'"seed": 2147483648', "seed"),
        (b'"max_tokens": 1e999', "max_tokens"),
        (b'"stop": ' + b"[" * 50 + b"]" * 50, None),
        (b'"user": ' + b"[" * 100_000 + b"]" * 100_000, None),
    ],
)
def test_raw_bodies_nan_huge_and_deep_are_400(server, raw, param):
    body = b'{"model": "fields", "messages": [{"role": "user", "content": "Hi"}], ' + raw + b"}"
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    if param is None:
        assert error["message"] == "request body is nested more than 32 levels deep"
    json.dumps(error)
