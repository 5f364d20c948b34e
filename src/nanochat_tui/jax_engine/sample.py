"""Token streaming from a ``GPT``: KV-cached ``generate`` and a full-recompute reference.

Both yield one token id at a time and draw the same random numbers, so with the same seed they
produce the same tokens (exactly so for greedy decoding, ``temperature=0``). A sampled id found in
``stop_ids`` ends the stream and is not yielded.

Prompt and cache lengths are rounded up to powers of two so a chat session compiles a handful of
shapes, not one per prompt length (and the temperature is traced, not static, so changing it in
the Chat pane does not compile either); the padding is harmless because the decode mask only lets a
query see cache slots at or before its own position, and every slot is rewritten before it is seen.

Tool use (as nanochat's engine): with a ``ToolHook``, the ids between ``<|python_start|>`` and
``<|python_end|>`` are handed to the hook once the call closes, and the ids it returns
(``<|output_start|>…<|output_end|>``) are *forced*: fed to the model one per step in place of the
sampled token, and yielded like sampled ones, so generation continues after the tool's output.
Forced tokens count towards ``max_new_tokens`` and never stop the stream. ``assistant_prefix``
says how many trailing prompt ids the assistant already "wrote" (a prefill): a call they close runs
before the first sampled token.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nanochat_tui.jax_engine.model import GPT, KVCache, norm


def _bucket(n: int, minimum: int = 16) -> int:
    return max(minimum, 1 << (max(n, 1) - 1).bit_length())


def _padded_ids(ids: Sequence[int], length: int) -> jax.Array:
    """``int32[1, length]``: ``ids`` then zeros, built on the host (a device-side scatter would
    compile once per prompt length)."""
    out = np.zeros((1, length), np.int32)
    out[0, : len(ids)] = ids
    return jnp.asarray(out)


def sample_token(
    logits: jax.Array,
    key: jax.Array,
    temperature: float | jax.Array,
    top_k: int | None,
    *,
    greedy: bool | None = None,
) -> jax.Array:
    """Sample ids ``int32[B]`` from ``logits[B, V]``; ``temperature <= 0`` means greedy.

    Under ``jit`` pass ``greedy`` (static) and a traced ``temperature``: a new temperature then
    reuses the compiled function instead of compiling another."""
    if greedy if greedy is not None else temperature <= 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / temperature
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        vals, idx = jax.lax.top_k(logits, top_k)
        choice = jax.random.categorical(key, vals, axis=-1)
        return jnp.take_along_axis(idx, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


class _Compiled(NamedTuple):
    prefill: Callable
    decode_one: Callable
    full_next: Callable


# One set of jitted functions per model object. They take the model's parameters as a plain pytree
# (``nnx.split``) through ``jax.jit``: ``nnx.jit`` re-walks the module graph on every call, which made
# per-token decode ~4x slower on CPU for small models. The graphdef is closed over rather than made
# static because it holds the (unhashable) model config.
_COMPILED: weakref.WeakKeyDictionary[GPT, _Compiled] = weakref.WeakKeyDictionary()


def _compiled(model: GPT) -> _Compiled:
    if (fns := _COMPILED.get(model)) is not None:
        return fns
    graphdef = nnx.graphdef(model)
    # greedy and top_k change the program; the temperature is data (a new value: no recompile)
    static = ("greedy", "top_k")

    @partial(jax.jit, static_argnames=static, donate_argnames=("cache",))
    def prefill(state, idx, cache, last, key, temperature, greedy, top_k):
        model = nnx.merge(graphdef, state)
        logits, cache = model.decode(idx, cache, 0)
        # The prompt is padded: smear's next step must read the last prompt token's embedding,
        # not the padding's that decode left in the cache.
        last_tok = jax.lax.dynamic_slice_in_dim(idx, last, 1, axis=1)
        cache = cache._replace(x_prev=norm(model.wte(last_tok).astype(model.dtype)))
        row = jax.lax.dynamic_index_in_dim(logits, last, axis=1, keepdims=False)
        return sample_token(row, key, temperature, top_k, greedy=greedy), cache

    @partial(jax.jit, static_argnames=static, donate_argnames=("cache",))
    def decode_one(state, tok, cache, pos, key, temperature, greedy, top_k):
        logits, cache = nnx.merge(graphdef, state).decode(tok[:, None], cache, pos)
        return sample_token(logits[:, -1], key, temperature, top_k, greedy=greedy), cache

    @partial(jax.jit, static_argnames=static)
    def full_next(state, idx, last, key, temperature, greedy, top_k):
        logits = nnx.merge(graphdef, state)(idx)
        row = jax.lax.dynamic_index_in_dim(logits, last, axis=1, keepdims=False)
        return sample_token(row, key, temperature, top_k, greedy=greedy)

    fns = _COMPILED[model] = _Compiled(prefill, decode_one, full_next)
    return fns


class ToolHook(Protocol):
    """Runs a tool call: ``hook(call_ids)`` returns the ids to force after ``python_end``
    (usually ``output_start, *output, output_end``; empty forces nothing)."""

    python_start: int
    python_end: int

    def __call__(self, call_ids: list[int]) -> list[int]: ...


class _ToolState:
    """Where the stream is with respect to a python block, and the ids waiting to be forced."""

    def __init__(self, hook: ToolHook | None) -> None:
        self.hook = hook
        self.forced: deque[int] = deque()
        self.call: list[int] | None = None  # ids of the open python block

    def observe(self, t: int) -> None:
        hook = self.hook
        if hook is None:
            return
        if t == hook.python_start:
            self.call = []
        elif t == hook.python_end and self.call is not None:
            call, self.call = self.call, None
            if call:
                self.forced.extend(hook(call))
        elif self.call is not None:
            self.call.append(t)


def _check(prompt_ids: Sequence[int], max_new_tokens: int) -> None:
    if not prompt_ids:
        raise ValueError("prompt_ids is empty; start with at least one token (e.g. <|bos|>)")
    if max_new_tokens < 0:
        raise ValueError("max_new_tokens must be >= 0")


def generate(
    model: GPT,
    prompt_ids: list[int],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    stop_ids: Sequence[int] = (),
    tools: ToolHook | None = None,
    assistant_prefix: int = 0,
) -> Iterator[int]:
    """Stream up to ``max_new_tokens`` ids after ``prompt_ids`` using the KV cache; ``tools``
    runs python calls and forces their output (module docstring)."""
    _check(prompt_ids, max_new_tokens)
    if max_new_tokens == 0:
        return
    n = len(prompt_ids)
    padded = _bucket(n)
    cache: KVCache = model.init_cache(1, _bucket(padded + max_new_tokens))
    idx = _padded_ids(prompt_ids, padded)
    key = jax.random.key(seed)
    stops = set(stop_ids)
    fns, state = _compiled(model), nnx.state(model)
    temp, greedy = jnp.float32(max(temperature, 0.0)), temperature <= 0
    tok, cache = fns.prefill(
        state, idx, cache, jnp.int32(n - 1), jax.random.fold_in(key, 0), temp, greedy, top_k
    )
    state_tools = _ToolState(tools)
    for t in prompt_ids[len(prompt_ids) - assistant_prefix :] if assistant_prefix else ():
        state_tools.observe(t)
    for i in range(max_new_tokens):
        if state_tools.forced:
            t = state_tools.forced.popleft()
            tok = jnp.asarray(np.array([t], np.int32))
        else:
            t = int(tok[0])
            if t in stops:
                return
        yield t
        state_tools.observe(t)
        if i + 1 == max_new_tokens:
            return
        tok, cache = fns.decode_one(
            state,
            tok,
            cache,
            jnp.int32(n + i),
            jax.random.fold_in(key, i + 1),
            temp,
            greedy,
            top_k,
        )


def generate_uncached(
    model: GPT,
    prompt_ids: list[int],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    stop_ids: Sequence[int] = (),
    tools: ToolHook | None = None,
    assistant_prefix: int = 0,
) -> Iterator[int]:
    """Same as ``generate`` but re-runs the full forward pass for every token (reference/tests)."""
    _check(prompt_ids, max_new_tokens)
    ids = list(prompt_ids)
    key = jax.random.key(seed)
    stops = set(stop_ids)
    fns, state = _compiled(model), nnx.state(model)
    temp, greedy = jnp.float32(max(temperature, 0.0)), temperature <= 0
    state_tools = _ToolState(tools)
    for t in prompt_ids[len(prompt_ids) - assistant_prefix :] if assistant_prefix else ():
        state_tools.observe(t)
    for i in range(max_new_tokens):
        idx = _padded_ids(ids, _bucket(len(ids)))
        last = jnp.int32(len(ids) - 1)  # causal: the zero padding after it cannot change its logits
        key_i = jax.random.fold_in(key, i)
        t = int(fns.full_next(state, idx, last, key_i, temp, greedy, top_k)[0])
        if state_tools.forced:
            t = state_tools.forced.popleft()
        elif t in stops:
            return
        yield t
        state_tools.observe(t)
        ids.append(t)
