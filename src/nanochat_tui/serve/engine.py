"""Continuous batching over a fixed-slot KV cache.

The cache holds ``slots`` sequences of up to ``max_len`` tokens. One worker thread owns the device:
each turn it admits waiting requests into free slots (one prefill each, which also samples their
first token), then advances every active slot by one token in a single batched decode step, each
row at its own position. A request leaves its slot when it samples a stop id, reaches its token
budget, or is cancelled (client gone, stop string matched) — the next waiting request takes the
slot on the following turn, so concurrent requests share device steps instead of queueing behind
each other.

Every device call has one of a few fixed shapes: rows (requests) and cache lengths rounded up to
powers of two, prompts padded to at least ``MIN_LENGTH`` and prefilled at most ``PREFILL_ROWS`` at a
time. ``precompile`` compiles that whole set from a background thread, so traffic does not wait
on XLA once it is done (and with the persistent compilation cache, a restart loads it from disk).

Sampling is per row: temperature (0 = greedy, exactly ``argmax`` like ``jax_engine.sample``), top-k,
top-p and a seed, keyed ``fold_in(key(seed), i)`` for the i-th generated token as in ``generate``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nanochat_tui.errors import IncompatibleCheckpoint
from nanochat_tui.jax_engine.model import GPT
from nanochat_tui.serve.decode import decode_rows, init_slot_cache, mismatch, write_slots

# emit(token_id, None) for each generated token, then emit(None, finish_reason) exactly once
Emit = Callable[[int | None, str | None], None]


class QueueFull(Exception):
    """Every slot is busy and the waiting queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"all slots busy and queue full; retry after {retry_after}s")
        self.retry_after = retry_after


@dataclass(eq=False)
class GenRequest:
    """One generation: prompt ids, sampling settings and where its tokens go."""

    ids: list[int]
    max_tokens: int
    emit: Emit
    temperature: float = 1.0
    top_k: int = 0  # 0 = no top-k cut
    top_p: float = 1.0
    seed: int = 0
    stop_ids: frozenset[int] = frozenset()
    generated: int = 0
    cancelled: bool = False
    submitted: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    # device-side state while it holds a slot
    slot: int = -1
    pos: int = 0
    last: int = 0  # the token fed to the next decode step (at ``pos``)
    prev: int = 0  # the token before it (smear reads its embedding)


MIN_LENGTH = 64  # shortest prompt padding and cache length a step attends over
PREFILL_ROWS = 8  # most requests one prefill call takes (more are admitted in several calls)


def _bucket(n: int, cap: int, minimum: int = MIN_LENGTH) -> int:
    """``n`` rounded up to a power of two (at least ``minimum``, at most ``cap``)."""
    return min(cap, max(minimum, 1 << (max(n, 1) - 1).bit_length()))


def _buckets(cap: int, minimum: int) -> list[int]:
    """Every value ``_bucket(n, cap, minimum)`` takes for ``n`` in 1..cap, ascending."""
    return sorted({_bucket(n, cap, minimum) for n in range(1, cap + 1)})


def _spec(x):
    """The shape, dtype and placement of ``x``: enough to compile for it without touching it.
    An uncommitted array (the default device's) gets no sharding, or the program compiled for
    the spec would not be the one a call with the array looks up."""
    committed = getattr(x, "committed", False)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding if committed else None)


def sample_rows(
    logits: jax.Array,
    seeds: jax.Array,
    counters: jax.Array,
    temperature: jax.Array,
    top_k: jax.Array,
    top_p: jax.Array,
) -> jax.Array:
    """One id per row of ``logits[B, V]``, each row with its own settings (``temperature <= 0``:
    greedy). Top-k is applied first, then top-p on what remains (as transformers does)."""
    greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)

    def sampled() -> jax.Array:
        v = logits.shape[-1]
        t = jnp.where(temperature > 0, temperature, 1.0)
        scaled = logits.astype(jnp.float32) / t[:, None]
        ranked = -jnp.sort(-scaled, axis=-1)
        k = jnp.where(top_k > 0, jnp.minimum(top_k, v), v)
        ranked = jnp.where(jnp.arange(v)[None, :] < k[:, None], ranked, -jnp.inf)
        probs = jax.nn.softmax(ranked, axis=-1)
        keep = (jnp.cumsum(probs, axis=-1) - probs) < top_p[:, None]  # always keeps the first
        n_keep = jnp.sum(keep & (jnp.arange(v)[None, :] < k[:, None]), axis=-1)
        threshold = jnp.take_along_axis(ranked, (jnp.maximum(n_keep, 1) - 1)[:, None], axis=-1)
        masked = jnp.where(scaled >= threshold, scaled, -jnp.inf)
        keys = jax.vmap(lambda s, c: jax.random.fold_in(jax.random.key(s), c))(seeds, counters)
        ids = jax.vmap(jax.random.categorical)(keys, masked).astype(jnp.int32)
        return jnp.where(temperature > 0, ids, greedy)

    return jax.lax.cond(jnp.any(temperature > 0), sampled, lambda: greedy)


class BatchEngine:
    """Serve ``model`` to many concurrent requests; ``submit`` from any thread."""

    def __init__(
        self,
        model: GPT,
        *,
        slots: int = 8,
        max_len: int | None = None,
        max_queue: int = 64,
    ) -> None:
        # Both recipes and every switch are served; what can still differ is a plugin's block
        # (e.g. an MLP that mixes tokens), which the one-token-per-row step would serve wrongly.
        off = mismatch(model)
        if off > 1e-2 * (1.0 + model.config.softcap):
            raise IncompatibleCheckpoint(
                f"the serving step does not reproduce this model's logits (off by {off:.3g}): "
                "a plugin's block does not decode one token per row as GPT.decode does",
                "chat with it via `nanochat-tui chat`, or serve a model without that plugin",
            )
        self.model = model
        self.slots = slots
        self.max_len = max_len or model.config.sequence_len
        self.max_queue = max_queue
        # the weights as a flat list of arrays: flattening nnx Variables on every call cost
        # ~2 ms of Python per step, as much as a whole one-row step of a small model
        self._state, self._state_def = jax.tree.flatten(nnx.state(model))
        self._cache = init_slot_cache(model, slots, self.max_len)
        self._active: list[GenRequest | None] = [None] * slots
        self._pending: deque[GenRequest] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._compile()
        self._specs = jax.tree.map(_spec, (self._state, self._cache))
        self._compiler: threading.Thread | None = None
        self.compiled = 0  # shapes precompiled so far, of ``shape_count``
        self.shape_count = len(self.shapes())
        self.steps = 0  # batched decode steps run (observability and tests)

    # ------------------------------------------------------------ public

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="serve-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in (self._thread, self._compiler):
            if thread is not None:
                thread.join(timeout=60)

    def submit(self, req: GenRequest) -> None:
        """Queue ``req``; raises QueueFull when every slot is busy and the queue is full."""
        with self._cond:
            busy = sum(r is not None for r in self._active) + len(self._pending)
            if busy >= self.slots + self.max_queue:
                raise QueueFull(retry_after=1)
            self._pending.append(req)
            self._cond.notify_all()

    def cancel(self, req: GenRequest) -> None:
        """Stop generating for ``req``; its slot is freed on the worker's next turn."""
        with self._cond:
            req.cancelled = True
            self._cond.notify_all()

    def load(self) -> tuple[int, int]:
        """(active slots, waiting requests)."""
        with self._cond:
            return sum(r is not None for r in self._active), len(self._pending)

    def shapes(self) -> list[tuple[str, int, int]]:
        """Every ``(kind, rows, length)`` the worker can run, the likeliest first: short cache
        lengths before long ones, at each length the prefills and then the decode steps (``length``
        is 0 for the sampler, whose shape is the rows alone)."""
        out = [("sample", n, 0) for n in _buckets(self.slots, 1)]
        for length in _buckets(self.max_len, MIN_LENGTH):
            out += [("prefill", n, length) for n in _buckets(min(self.slots, PREFILL_ROWS), 1)]
            out += [("step", n, length) for n in _buckets(self.slots, 1)]
        return out

    def precompile(self, *, wait: bool = False, done: Callable[[float], None] | None = None):
        """Compile every shape in ``shapes()`` on a background thread (``wait``: block until it is
        done); ``done(seconds)`` is called at the end unless the engine stopped first. Traffic is
        served meanwhile: a shape it needs before its turn compiles on demand, as without this."""

        def work() -> None:
            start = time.perf_counter()
            for kind, rows, length in self.shapes():
                if self._stopping:
                    return
                self._lower(kind, rows, length).compile()
                self.compiled += 1
            if done is not None:
                done(time.perf_counter() - start)

        self._compiler = threading.Thread(target=work, name="serve-compile", daemon=True)
        self._compiler.start()
        if wait:
            self._compiler.join()

    def _lower(self, kind: str, rows: int, length: int):
        """The traced program for one shape, from the specs alone (the live cache may be donated
        by the worker meanwhile); compiling it fills the same cache the worker's calls look in."""
        state, cache = self._specs
        i32 = jax.ShapeDtypeStruct((rows,), jnp.int32)
        f32 = jax.ShapeDtypeStruct((rows,), jnp.float32)
        if kind == "sample":
            logits = jax.ShapeDtypeStruct((rows, self.model.config.vocab_size), jnp.float32)
            return self._sample.lower(logits, i32, i32, f32, i32, f32)
        if kind == "prefill":
            idx = jax.ShapeDtypeStruct((rows, length), jnp.int32)
            return self._prefill.lower(state, cache, i32, idx, i32)
        return self._step.lower(state, cache, i32, i32, i32, length)

    # ------------------------------------------------------------ device functions

    def _compile(self) -> None:
        graphdef, state_def = nnx.graphdef(self.model), self._state_def

        def merged(leaves: list[jax.Array]) -> GPT:
            return nnx.merge(graphdef, jax.tree.unflatten(state_def, leaves))

        @partial(jax.jit, donate_argnames=("cache",))
        def prefill(state, cache, slots, idx, last):
            model = merged(state)
            a, t = idx.shape
            logits, rows = model.decode(idx, model.init_cache(a, t), 0)
            logits = jnp.take_along_axis(logits, last[:, None, None], axis=1)[:, 0]
            return logits, write_slots(cache, slots, rows)

        @partial(jax.jit, donate_argnames=("cache",), static_argnames=("length",))
        def step(state, cache, toks, prev, pos, length):
            model = merged(state)
            return decode_rows(model, toks, prev, cache, pos, length)

        # its own program (shaped by rows alone), so the model's are not compiled once per sampler
        self._sample = jax.jit(sample_rows)
        self._prefill, self._step = prefill, step

    # ------------------------------------------------------------ worker

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._pending and not any(self._active):
                    self._cond.wait()
                if self._stopping:
                    break
                self._release_cancelled()
                admit = []
                for slot, held in enumerate(self._active):
                    while held is None and self._pending:
                        req = self._pending.popleft()
                        if req.cancelled:
                            req.emit(None, "cancelled")
                            continue
                        req.slot, self._active[slot] = slot, req
                        admit.append(req)
                        break
            if admit:
                self._admit(admit)
            if any(self._active):
                self._advance()
        for req in [*self._pending, *(r for r in self._active if r is not None)]:
            req.emit(None, "cancelled")

    def _release_cancelled(self) -> None:
        for slot, req in enumerate(self._active):
            if req is not None and req.cancelled:
                self._active[slot] = None
                req.emit(None, "cancelled")

    def _admit(self, reqs: list[GenRequest]) -> None:
        """Prefill newly admitted requests, ``PREFILL_ROWS`` at a time."""
        for start in range(0, len(reqs), PREFILL_ROWS):
            self._prefill_rows(reqs[start : start + PREFILL_ROWS])

    def _prefill_rows(self, reqs: list[GenRequest]) -> None:
        """Prefill ``reqs`` together (count and prompt length rounded up to powers of two; padding
        rows repeat the first request) and deliver their first tokens."""
        count = _bucket(len(reqs), min(self.slots, PREFILL_ROWS), minimum=1)
        padded = reqs + [reqs[0]] * (count - len(reqs))
        idx = np.zeros((count, _bucket(max(len(r.ids) for r in reqs), self.max_len)), np.int32)
        for row, req in enumerate(padded):
            idx[row, : len(req.ids)] = req.ids
        slots = np.array([r.slot for r in padded], np.int32)
        last = np.array([len(r.ids) - 1 for r in padded], np.int32)
        logits, self._cache = self._prefill(self._state, self._cache, slots, idx, last)
        toks = self._sample_for(padded, logits)
        for row, req in enumerate(reqs):
            req.pos, req.last = len(req.ids), req.ids[-1]
            self._deliver(req, int(toks[row]))

    def _advance(self) -> None:
        """One batched step over the live slots: rows up to the highest busy slot and cache
        positions up to the furthest sequence, each rounded up to a power of two."""
        top = max(i for i, r in enumerate(self._active) if r is not None) + 1
        rows = self._active[: _bucket(top, self.slots, minimum=1)]
        length = _bucket(max(r.pos for r in rows if r is not None) + 1, self.max_len)
        toks = np.array([r.last if r else 0 for r in rows], np.int32)
        prev = np.array([r.prev if r else 0 for r in rows], np.int32)
        pos = np.array([r.pos if r else 0 for r in rows], np.int32)
        logits, self._cache = self._step(self._state, self._cache, toks, prev, pos, length)
        self.steps += 1
        out = self._sample_for(rows, logits)
        for slot, req in enumerate(rows):
            if req is not None:
                req.pos += 1
                self._deliver(req, int(out[slot]))

    def _sample_for(self, rows: list[GenRequest | None], logits: jax.Array) -> np.ndarray:
        """One id per row of ``logits`` with that row's settings (an empty row: greedy); the
        counter is the index of the token being sampled (``generated``: 0 at admission)."""
        ids = self._sample(
            logits,
            np.array([r.seed if r else 0 for r in rows], np.int32),
            np.array([r.generated if r else 0 for r in rows], np.int32),
            np.array([r.temperature if r else 0.0 for r in rows], np.float32),
            np.array([r.top_k if r else 0 for r in rows], np.int32),
            np.array([r.top_p if r else 1.0 for r in rows], np.float32),
        )
        return np.asarray(ids)

    def _deliver(self, req: GenRequest, tok: int) -> None:
        """Hand ``tok`` to the request, or finish it (stop id, budget, context end, cancelled)."""
        reason = None
        if req.cancelled:
            reason = "cancelled"
        elif tok in req.stop_ids:
            reason = "stop"
        else:
            if req.first_token is None:
                req.first_token = time.perf_counter()
            req.generated += 1
            req.prev, req.last = req.last, tok
            req.emit(tok, None)
            if req.generated >= req.max_tokens or req.pos >= self.max_len:
                reason = "length"
        if reason is not None:
            with self._cond:
                self._active[req.slot] = None
            req.emit(None, reason)
