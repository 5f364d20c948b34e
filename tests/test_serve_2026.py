"""Serving a ``nanochat-2026`` checkpoint (value embeddings, residual/x0 scalars, smear, backout,
rope base 100000, QK scale, GQA, a padded vocabulary, and an 8-token sliding window the prompts
exceed) with the real ``openai`` client over 127.0.0.1: every reply equals the sampler's greedy
output token for token — alone, streamed, and with several requests of different lengths batched.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest

from export_helpers import RECIPE_2026, make_run
from nanochat_tui.jax_engine.sample import generate, generate_uncached
from nanochat_tui.serve.server import BackgroundServer, load_state


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("serve-2026")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(home))
        return make_run(home / "runs", "new", RECIPE_2026)


@pytest.fixture(scope="module")
def server(run_dir):
    with BackgroundServer(load_state(run_dir, slots=4, max_queue=16)) as srv:
        yield srv


def greedy(state, messages: list[dict], n: int) -> tuple[list[int], list[int]]:
    """(prompt ids, the sampler's greedy reply ids) for a chat."""
    tok = state.tokenizer
    ids = tok.render_conversation(messages, for_completion=True)
    stops = (tok.special("assistant_end"), tok.bos_id, tok.special("user_start"))
    model = state.engine.model
    return ids, list(generate(model, ids, max_new_tokens=n, temperature=0, stop_ids=stops))


def test_the_recipe_is_really_2026_and_the_window_bites(server):
    m = server.state.engine.model
    assert m.switches.recipe == "nanochat-2026"
    assert (m.switches.smear, m.switches.backout, m.switches.value_embeds) == (True,) * 3
    assert m.switches.residual_scalars and m.switches.qk_scale == 1.2
    assert [b.attn.window for b in m.blocks] == [8, None]
    ids, _ = greedy(server.state, [{"role": "user", "content": "Tell me a story"}], 16)
    assert len(ids) > 8  # the first layer cannot see the whole prompt
    # the cached sampler agrees with the full forward pass per token
    stops = (server.state.tokenizer.bos_id,)
    assert list(generate(m, ids, max_new_tokens=16, temperature=0, stop_ids=stops)) == list(
        generate_uncached(m, ids, max_new_tokens=16, temperature=0, stop_ids=stops)
    )


def test_chat_greedy_equals_sampler_nonstreaming_and_streaming(server):
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    ids, want = greedy(server.state, messages, 20)
    reply = client.chat.completions.create(
        model="new", messages=messages, temperature=0, max_tokens=20
    )
    assert reply.usage.prompt_tokens == len(ids)
    assert reply.usage.completion_tokens == len(want)
    assert reply.choices[0].message.content == server.state.tokenizer.decode(want)
    chunks = list(
        client.chat.completions.create(
            model="new",
            messages=messages,
            temperature=0,
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == reply.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == len(want)


def test_concurrent_requests_of_different_lengths_batch_and_match(server):
    state = server.state
    prompts = ["Hi", "Once upon a time there was", "a b c d e f g h i j k l m n o p", "Why?"]
    prompts += ["Write a long and winding sentence about rivers and mountains", "1 2 3"]
    chats = [[{"role": "user", "content": p}] for p in prompts]
    wants = [greedy(state, chat, 24) for chat in chats]
    assert len({len(ids) for ids, _ in wants}) == len(prompts)
    steps_before = state.engine.steps

    async def one(ac: openai.AsyncOpenAI, i: int) -> tuple[str, int]:
        if i % 2:
            stream = await ac.chat.completions.create(
                model="new",
                messages=chats[i],
                temperature=0,
                max_tokens=24,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [c async for c in stream]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            return text, chunks[-1].usage.completion_tokens
        reply = await ac.chat.completions.create(
            model="new", messages=chats[i], temperature=0, max_tokens=24
        )
        return reply.choices[0].message.content, reply.usage.completion_tokens

    async def main() -> list[tuple[str, int]]:
        ac = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        async with ac:
            jobs = (one(ac, i) for i in range(len(chats)))
            return await asyncio.wait_for(asyncio.gather(*jobs), timeout=180)

    got = asyncio.run(main())
    assert got == [(state.tokenizer.decode(want), len(want)) for _, want in wants]
    # 6 requests over 4 slots shared decode steps: fewer steps than tokens generated
    assert state.engine.steps - steps_before < sum(len(want) for _, want in wants)
