"""KV-cached generation must match full-recompute generation token for token."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from nanochat_tui.config.schema import ModelConfig
from nanochat_tui.jax_engine.model import GPT
from nanochat_tui.jax_engine.sample import generate, generate_uncached, sample_token


@pytest.fixture(scope="module")
def model() -> GPT:
    cfg = ModelConfig(
        depth=2, aspect_ratio=64, head_dim=32, sequence_len=64, vocab_size=300, n_kv_head=2
    )
    m = GPT(cfg, rngs=nnx.Rngs(0))
    leaves, treedef = jax.tree.flatten(nnx.state(m, nnx.Param))
    keys = jax.random.split(jax.random.key(1), len(leaves))
    nnx.update(
        m,
        jax.tree.unflatten(
            treedef,
            [jax.random.normal(k, x.shape) * 0.3 for k, x in zip(keys, leaves, strict=True)],
        ),
    )
    return m


PROMPT = [1, 5, 7, 9, 11, 13, 2]


def test_greedy_cached_equals_uncached(model):
    a = list(generate(model, PROMPT, max_new_tokens=24, temperature=0.0))
    b = list(generate_uncached(model, PROMPT, max_new_tokens=24, temperature=0.0))
    assert len(a) == 24 and a == b
    assert len(set(a)) > 1  # a random model that only repeats one token would make this test weak


def test_sampled_cached_equals_uncached_same_seed(model):
    kw = dict(max_new_tokens=12, temperature=1.0, top_k=20, seed=3)
    a = list(generate(model, PROMPT, **kw))
    assert a == list(generate_uncached(model, PROMPT, **kw))
    assert a != list(generate(model, PROMPT, **{**kw, "seed": 4}))


def test_stop_ids_end_the_stream(model):
    full = list(generate(model, PROMPT, max_new_tokens=16, temperature=0.0))
    stop = full[5]
    first = full.index(stop)
    out = list(generate(model, PROMPT, max_new_tokens=16, temperature=0.0, stop_ids=(stop,)))
    assert out == full[:first]


def test_streams_lazily_and_validates(model):
    it = generate(model, [3], max_new_tokens=4, temperature=0.0)
    assert isinstance(next(it), int)
    assert list(generate(model, [3], max_new_tokens=0)) == []
    with pytest.raises(ValueError):
        list(generate(model, [], max_new_tokens=3))


def test_top_k_restricts_choices():
    logits = jnp.log(jnp.array([[0.1, 0.5, 0.3, 0.1]]))
    picks = {int(sample_token(logits, jax.random.key(i), 1.0, 2)[0]) for i in range(50)}
    assert picks == {1, 2}
    assert int(sample_token(logits, jax.random.key(0), 0.0, None)[0]) == 1


def test_new_prompt_lengths_and_temperatures_reuse_the_compiled_prefill(model):
    """Time to first token must not pay a compile per prompt length or temperature: prompts are
    padded to power-of-two buckets and the temperature is traced. Counted with jax.monitoring."""
    compiles: list[str] = []

    def listener(event: str, duration: float, **_kw) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        list(generate(model, [1, 2, 3], max_new_tokens=4, temperature=0.7, top_k=5, seed=0))
        warm = len(compiles)
        assert warm >= 1  # the listener sees compiles (the first call compiled)
        for length, temperature in ((5, 0.7), (9, 1.3), (13, 0.2), (16, 0.9)):
            prompt = [(7 * i) % 299 + 1 for i in range(length)]
            list(generate(model, prompt, max_new_tokens=4, temperature=temperature, top_k=5))
        assert len(compiles) == warm, "a new prompt length or temperature recompiled"
        list(generate(model, list(range(1, 18)), max_new_tokens=4, temperature=0.7, top_k=5))
        assert len(compiles) > warm  # the next bucket (32) compiles once: the counter is live
    finally:
        jax.monitoring.clear_event_listeners()
