"""The serving engine's parts against independent references: the batched decode step against
``GPT.decode`` (both recipes: value embeddings, residual/x0 scalars, smear, backout, a sliding
window shorter than the sequences, rope base, QK scale), per-row sampling against argmax / NumPy
top-k and top-p sets, stop-string text."""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nanochat_tui.config.schema import ModelConfig
from nanochat_tui.errors import IncompatibleCheckpoint
from nanochat_tui.jax_engine.model import GPT
from nanochat_tui.jax_engine.sample import generate, generate_uncached
from nanochat_tui.serve.decode import decode_rows, init_slot_cache, mismatch, write_slots
from nanochat_tui.serve.engine import BatchEngine, GenRequest, QueueFull
from nanochat_tui.serve.sampling import sample_rows
from nanochat_tui.serve.text import TextStream

# every nanochat-2026 switch on, and S layers that see only the last 4 tokens
RECIPE_2026 = {"recipe": "nanochat-2026", "short_window": 4, "window_pattern": "SL"}


# a designer's per-block settings: heads, kv heads and head size differ per block, SwiGLU, a window
DESIGNED = {
    "recipe": "nanochat-2026",
    "width": 96,
    "blocks": [
        {"n_head": 4, "n_kv_head": 2, "mlp": "swiglu"},
        {"n_head": 2, "window": 4},
        {"n_head": 6, "n_kv_head": 1, "value_embed": True},
    ],
}


@pytest.fixture(scope="module", params=["nanochat-2025", "nanochat-2026", "designed"])
def model(request) -> GPT:
    extra = {"nanochat-2026": RECIPE_2026, "designed": DESIGNED}.get(request.param, {})
    cfg = ModelConfig(
        **{
            "depth": 3,
            "aspect_ratio": 32,
            "head_dim": 32,
            "sequence_len": 64,
            "vocab_size": 300,
            "n_kv_head": 1,
            **extra,
        }
    )
    m = GPT(cfg, rngs=nnx.Rngs(0))
    leaves, treedef = jax.tree.flatten(nnx.state(m, nnx.Param))
    keys = jax.random.split(jax.random.key(1), len(leaves))
    noisy = [jax.random.normal(k, x.shape) * 0.3 for k, x in zip(keys, leaves, strict=True)]
    nnx.update(m, jax.tree.unflatten(treedef, noisy))
    return m


def test_decode_rows_equals_gpt_decode_per_row(model):
    """Three rows at different positions (one past the 4-token window) decode 3 steps each."""
    prompts = [[5, 9, 2], [7, 7, 7, 7, 7, 1, 8, 9], [3]]
    nxt = [[11, 12, 13], [14, 15, 16], [17, 18, 19]]
    graphdef, state = nnx.split(model)
    if model.config.blocks:  # the designed model: only block 1 has the 4-token window
        assert [b.attn.window for b in model.blocks] == [None, 4, None]
    else:
        assert model.blocks[0].attn.window == (4 if model.switches.smear else None)

    @jax.jit
    def batched(state):
        m = nnx.merge(graphdef, state)
        cache = init_slot_cache(m, 4, 16)
        for slot, p in enumerate(prompts):
            _, row = m.decode(jnp.asarray([p]), m.init_cache(1, len(p)), 0)
            cache = write_slots(cache, jnp.asarray([slot], jnp.int32), row)
        out = []
        for s in range(3):
            toks = jnp.asarray([n[s] for n in nxt], jnp.int32)
            prev = jnp.asarray(
                [([*p, *n])[len(p) + s - 1] for p, n in zip(prompts, nxt, strict=True)]
            )
            pos = jnp.asarray([len(p) + s for p in prompts], jnp.int32)
            logits, cache = decode_rows(m, toks, prev.astype(jnp.int32), cache, pos, 16)
            out.append(logits)
        return jnp.stack(out, axis=1)  # [R, 3, V]

    @jax.jit
    def alone(state, ids):
        m = nnx.merge(graphdef, state)
        return m(ids)[0, -3:]

    got = batched(state)
    for b, p in enumerate(prompts):
        want = alone(state, jnp.asarray([[*p, *nxt[b]]], jnp.int32))
        np.testing.assert_allclose(got[b], want, atol=1e-4)
    assert mismatch(model) < 1e-4


def test_engine_refuses_a_model_it_cannot_reproduce(model, monkeypatch):
    monkeypatch.setattr("nanochat_tui.serve.engine.mismatch", lambda m: 50.0)
    with pytest.raises(IncompatibleCheckpoint, match="does not decode one token per row"):
        BatchEngine(model, slots=1)


def test_sample_rows_settings_per_row():
    logits = jax.random.normal(jax.random.key(0), (6, 50)) * 3
    argmax = np.asarray(jnp.argmax(logits, -1))
    seeds = jnp.arange(6, dtype=jnp.int32)
    zero = jnp.zeros(6, jnp.int32)
    temp = jnp.asarray([0, 1, 1, 1, 0.7, 1], jnp.float32)
    top_k = jnp.asarray([0, 1, 0, 5, 0, 0], jnp.int32)
    top_p = jnp.asarray([1, 1, 1e-6, 1, 1, 0.5], jnp.float32)
    sample = jax.jit(sample_rows)
    got = np.asarray(sample(logits, seeds, zero, temp, top_k, top_p))
    assert got[0] == argmax[0] and got[1] == argmax[1] and got[2] == argmax[2]
    assert got[3] in np.argsort(-np.asarray(logits[3]))[:5]
    probs = np.asarray(jax.nn.softmax(logits[5]))
    order = np.argsort(-probs)
    nucleus = order[: int(np.searchsorted(np.cumsum(probs[order]), 0.5)) + 1]
    for counter in range(20):
        row = sample(logits, seeds, zero + counter, temp, top_k, top_p)
        assert int(row[3]) in set(np.argsort(-np.asarray(logits[3]))[:5].tolist())
        assert int(row[5]) in set(nucleus.tolist())
    again = np.asarray(sample(logits, seeds, zero, temp, top_k, top_p))
    np.testing.assert_array_equal(got, again)


def _collect(engine: BatchEngine, ids: list[int], n: int, **kw) -> tuple[list[int], str]:
    out: list[int] = []
    done = threading.Event()
    reason: list[str] = []

    def emit(tok, fin):
        if fin is None:
            out.append(tok)
        else:
            reason.append(fin)
            done.set()

    engine.submit(GenRequest(ids=ids, max_tokens=n, emit=emit, **kw))
    assert done.wait(300)  # compiling under a loaded CI machine can take a while
    return out, reason[0]


def test_engine_greedy_and_seeded_sampling_match_generate(model):
    engine = BatchEngine(model, slots=4)
    engine.start()
    try:
        prompt = [1, 5, 7, 9, 11, 13, 2]
        want = list(generate(model, prompt, max_new_tokens=20, temperature=0))
        # the full forward pass per token agrees (smear after a padded prefill, windows)
        assert want == list(generate_uncached(model, prompt, max_new_tokens=20, temperature=0))
        assert _collect(engine, prompt, 20, temperature=0) == (want, "length")
        # same key schedule as generate: fold_in(key(seed), i) for the i-th token
        want = list(generate(model, prompt, max_new_tokens=20, temperature=1.0, seed=4))
        assert _collect(engine, prompt, 20, temperature=1.0, seed=4)[0] == want
        stop = want[3]
        got, why = _collect(engine, prompt, 20, temperature=1.0, seed=4, stop_ids=frozenset({stop}))
        assert got == want[: want.index(stop)] and why == "stop"
    finally:
        engine.stop()


def test_shapes_are_a_small_fixed_set(model):
    engine = BatchEngine(model, slots=32, max_len=64 * 8)
    shapes = engine.shapes()
    rows = [1, 2, 4, 8, 16, 32]
    assert shapes[:6] == [("sample", n, 0) for n in rows]
    for length in (64, 128, 256, 512):  # short lengths first; prefills at most 8 rows
        at = [(kind, n) for kind, n, cut in shapes if cut == length]
        assert at == [("prefill", n) for n in (1, 2, 4, 8)] + [("step", n) for n in rows]
    assert len(shapes) == engine.shape_count == 6 + 4 * 10


def test_precompiled_engine_compiles_nothing_while_serving(model):
    """After ``precompile`` every request shape is already built: concurrent traffic with
    different prompt lengths, counts and samplers triggers no XLA compilation."""
    engine = BatchEngine(model, slots=4)
    engine.precompile(wait=True)
    assert engine.compiled == engine.shape_count
    compiles: list[float] = []

    def listen(event: str, seconds: float, **kw) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(seconds)

    jax.monitoring.register_event_duration_secs_listener(listen)
    engine.start()
    try:
        results: list[tuple[list[int], str]] = []
        workers = [
            threading.Thread(
                target=lambda i=i: results.append(
                    _collect(engine, list(range(1, 3 + 9 * i)), 6 + i, temperature=0.5 * (i % 2))
                )
            )
            for i in range(5)  # 5 requests on 4 slots: one waits, rows and lengths vary
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert [why for _, why in results] == ["length"] * 5
        assert compiles == []
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
        engine.stop()


def test_queue_full_when_slots_and_queue_are_taken(model):
    engine = BatchEngine(model, slots=1, max_queue=1)  # not started: nothing leaves the queue
    for _ in range(2):  # one for the slot, one for the queue
        engine.submit(GenRequest(ids=[1], max_tokens=1, emit=lambda t, f: None))
    with pytest.raises(QueueFull):
        engine.submit(GenRequest(ids=[1], max_tokens=1, emit=lambda t, f: None))


class CharTokenizer:
    """Ids are code points; 0xFFFD-producing partial characters are modelled by id -1."""

    def decode(self, ids):
        return "".join("\ufffd" if i < 0 else chr(i) for i in ids if i != -2)


def test_text_stream_holds_back_stop_prefixes_and_cuts_at_the_stop():
    ts = TextStream(CharTokenizer(), ["END"])
    pieces = [ts.push(ord(c)) for c in "abcE"]
    assert "".join(pieces) == "abc"  # "E" may start "END": held back
    assert ts.push(ord("x")) == "Ex"
    assert ts.push(ord("E")) == "" and ts.push(ord("N")) == ""
    assert ts.push(ord("D")) == "" and ts.stopped
    assert ts.flush() == ""
    ts = TextStream(CharTokenizer(), ["END"])
    assert [ts.push(ord(c)) for c in "hiE"] == ["h", "i", ""]
    assert ts.flush() == "E"  # generation ended: what was held back is released
    ts = TextStream(CharTokenizer(), [])
    assert ts.push(-1) == ""  # an incomplete character waits
