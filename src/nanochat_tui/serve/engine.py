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
top-p and a seed, keyed ``fold_in(key(seed), i)`` for the i-th generated token as in ``generate``;
``logit_bias``, presence/frequency penalties and logprobs are per row too (``serve/sampling.py``).

One request never takes the engine down: its settings are converted to the device's types alone
when it is admitted (a value they cannot hold fails that request), a device call that raises fails
the requests in it and the worker goes on, and a callback that raises cancels its request. Failed
requests finish with ``"error"`` and ``req.error`` says why. If the worker stops or dies anyway,
every request it held finishes with ``"unavailable"``, ``health()`` says why and ``submit`` refuses.
"""

from __future__ import annotations

import logging
import math
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
from nanochat_tui.serve.sampling import (
    TOP_LOGPROBS,
    LogitAdjust,
    TokenLogprob,
    adjustment_arrays,
    sample_adjusted,
    sample_rows,
    token_logprobs,
)

log = logging.getLogger(__name__)

# emit(token_id, None) for each generated token, then emit(None, reason) exactly once; reason is
# "stop", "length", "cancelled", "error" (``req.error`` says why) or "unavailable" (engine stopped)
Emit = Callable[[int | None, str | None], None]


class QueueFull(Exception):
    """Every slot is busy and the waiting queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"all slots busy and queue full; retry after {retry_after}s")
        self.retry_after = retry_after


class EngineUnavailable(Exception):
    """The engine is stopped or its worker died: nothing submitted now would be served."""


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
    logprobs: int | None = None  # report logprobs with this many alternatives (None: none)
    logit_bias: dict[int, float] = field(default_factory=dict)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # what the worker writes before the emit that announces it
    token_logprobs: list[TokenLogprob] = field(default_factory=list)  # one per emitted token
    error: str | None = None  # why it finished with "error" or "unavailable"
    generated: int = 0
    cancelled: bool = False
    submitted: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    # device-side state while it holds a slot
    slot: int = -1
    pos: int = 0
    last: int = 0  # the token fed to the next decode step (at ``pos``)
    prev: int = 0  # the token before it (smear reads its embedding)
    settings: tuple = ()  # (seed, temperature, top_k, top_p) as the device's types
    adjust: LogitAdjust | None = None
    finished: bool = False


IDLE_ROW = (np.int32(0), np.float32(0.0), np.int32(0), np.float32(1.0))  # an empty slot: greedy
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
        self._closed = False  # the worker has exited (stopped or died)
        self.failure: str | None = None  # why the worker died, if it did
        self._in_call: list[GenRequest] = []  # the requests in the device call under way
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
        """Queue ``req``; raises QueueFull when every slot is busy and the queue is full, and
        EngineUnavailable when the engine is stopped or its worker died."""
        with self._cond:
            if self._stopping or self._closed:
                raise EngineUnavailable(self.health() or "the engine is stopped")
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

    def health(self) -> str | None:
        """None while the worker is serving; otherwise why it is not."""
        if self.failure:
            return self.failure
        if self._stopping or self._closed:
            return "the engine is stopped"
        if self._thread is None:
            return "the engine is not started"
        if not self._thread.is_alive():
            return "the engine thread is not running"
        return None

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
        # compiled on first use: only batches with a row that asks for them run these
        self._sample_adjusted = jax.jit(sample_adjusted)
        k = min(TOP_LOGPROBS, self.model.config.vocab_size)
        self._logprobs = jax.jit(partial(token_logprobs, k=k))
        self._prefill, self._step = prefill, step

    # ------------------------------------------------------------ worker

    def _run(self) -> None:
        try:
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
                                self._finish(req, "cancelled")
                                continue
                            req.slot, self._active[slot] = slot, req
                            admit.append(req)
                            break
                try:
                    if admit:
                        self._admit(admit)
                    if any(self._active):
                        self._advance()
                except Exception as err:  # a device call failed: serve on
                    self._recover(err)
        except BaseException as err:  # the worker ends here: say why, then fail what it held
            self.failure = f"the engine thread died: {type(err).__name__}: {err}"
            log.critical("serve engine: %s", self.failure, exc_info=err)
        finally:
            with self._cond:
                self._closed = True
                left = [*self._pending, *(r for r in self._active if r is not None)]
                self._pending.clear()
            for req in left:
                self._finish(req, "unavailable", self.failure or "the server is shutting down")

    def _recover(self, err: Exception) -> None:
        """After a device call raised: its requests fail; if it consumed the (donated) cache,
        every request holding a slot fails too and the cache is rebuilt."""
        log.error("serve engine: a device call failed", exc_info=err)
        why = f"the engine failed on this request: {type(err).__name__}: {err}"
        lost = any(x.is_deleted() for x in jax.tree.leaves(self._cache))
        for req in [*self._in_call, *(self._active if lost else ())]:
            if req is not None:
                self._finish(req, "error", why)
        if lost:
            self._cache = init_slot_cache(self.model, self.slots, self.max_len)
        self._in_call = []

    def _release_cancelled(self) -> None:
        for req in self._active:
            if req is not None and req.cancelled:
                self._finish(req, "cancelled")

    def _admit(self, reqs: list[GenRequest]) -> None:
        """Prepare newly admitted requests one by one (one that fails leaves its slot), then
        prefill the rest ``PREFILL_ROWS`` at a time."""
        ready = []
        for req in reqs:
            try:
                self._prepare(req)
            except Exception as err:  # this request fails, not the batch
                self._finish(req, "error", f"the request was refused: {type(err).__name__}: {err}")
            else:
                ready.append(req)
        for start in range(0, len(ready), PREFILL_ROWS):
            self._prefill_rows(ready[start : start + PREFILL_ROWS])

    def _prepare(self, req: GenRequest) -> None:
        """Check ``req`` and convert its settings to the device's types, alone: a value the batch
        arrays cannot hold (a seed beyond int32, a NaN) fails here instead of in the batch."""
        vocab = self.model.config.vocab_size
        ids = np.asarray(req.ids, np.int32)
        if ids.ndim != 1 or not 0 < len(ids) < self.max_len:
            raise ValueError(f"a prompt of {len(req.ids)} tokens; 1 to {self.max_len - 1} fit")
        if ids.min() < 0 or ids.max() >= vocab:
            raise ValueError(f"a prompt token id outside the vocabulary (0 to {vocab - 1})")
        if req.max_tokens < 1:
            raise ValueError(f"max_tokens {req.max_tokens}; at least 1")
        settings = (
            np.int32(req.seed),
            np.float32(req.temperature),
            np.int32(req.top_k),
            np.float32(req.top_p),
        )
        numbers = (req.presence_penalty, req.frequency_penalty, *req.logit_bias.values())
        if not all(map(math.isfinite, (*settings[1::2], *numbers))):
            raise ValueError("a sampling setting is not a finite number")
        if any(not 0 <= t < vocab for t in req.logit_bias):
            raise ValueError(f"a logit_bias token id outside the vocabulary (0 to {vocab - 1})")
        if req.logprobs is not None and not 0 <= req.logprobs <= TOP_LOGPROBS:
            raise ValueError(f"logprobs {req.logprobs}; 0 to {TOP_LOGPROBS} alternatives")
        req.settings = settings
        req.adjust = LogitAdjust(req.logit_bias, req.presence_penalty, req.frequency_penalty)

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
        self._in_call = reqs
        logits, self._cache = self._prefill(self._state, self._cache, slots, idx, last)
        toks, lps = self._sample_for(padded, logits)
        for row, req in enumerate(reqs):
            req.pos, req.last = len(req.ids), req.ids[-1]
            self._deliver(req, int(toks[row]), lps[row])
        self._in_call = []

    def _advance(self) -> None:
        """One batched step over the live slots: rows up to the highest busy slot and cache
        positions up to the furthest sequence, each rounded up to a power of two."""
        top = max(i for i, r in enumerate(self._active) if r is not None) + 1
        rows = self._active[: _bucket(top, self.slots, minimum=1)]
        length = _bucket(max(r.pos for r in rows if r is not None) + 1, self.max_len)
        toks = np.array([r.last if r else 0 for r in rows], np.int32)
        prev = np.array([r.prev if r else 0 for r in rows], np.int32)
        pos = np.array([r.pos if r else 0 for r in rows], np.int32)
        self._in_call = [r for r in rows if r is not None]
        logits, self._cache = self._step(self._state, self._cache, toks, prev, pos, length)
        self.steps += 1
        out, lps = self._sample_for(rows, logits)
        for slot, req in enumerate(rows):
            if req is not None:
                req.pos += 1
                self._deliver(req, int(out[slot]), lps[slot])
        self._in_call = []

    def _sample_for(
        self, rows: list[GenRequest | None], logits: jax.Array
    ) -> tuple[np.ndarray, list[TokenLogprob | None]]:
        """One id per row of ``logits`` with that row's settings (an empty row: greedy), and the
        logprobs of the rows that asked for them. The counter is the index of the token being
        sampled (``generated``: 0 at admission). Bias/penalties and logprobs run only when a row
        of this batch has them."""
        settings = [r.settings if r else IDLE_ROW for r in rows]
        args = (
            np.array([s[0] for s in settings], np.int32),
            np.array([r.generated if r else 0 for r in rows], np.int32),
            np.array([s[1] for s in settings], np.float32),
            np.array([s[2] for s in settings], np.int32),
            np.array([s[3] for s in settings], np.float32),
        )
        adjusts = [r.adjust if r else None for r in rows]
        if any(adjusts):
            width = _bucket(max(len(a.delta) for a in adjusts if a), 1 << 30, minimum=64)
            ids = self._sample_adjusted(logits, *adjustment_arrays(adjusts, width), *args)
        else:
            ids = self._sample(logits, *args)
        lps: list[TokenLogprob | None] = [None] * len(rows)
        if any(r is not None and r.logprobs is not None for r in rows):
            chosen, top, top_ids = map(np.asarray, self._logprobs(logits, ids))
            for i, r in enumerate(rows):
                if r is not None and r.logprobs is not None:
                    k = r.logprobs
                    pairs = zip(top_ids[i, :k].tolist(), top[i, :k].tolist(), strict=True)
                    lps[i] = TokenLogprob(float(chosen[i]), list(pairs))
        return np.asarray(ids), lps

    def _deliver(self, req: GenRequest, tok: int, lp: TokenLogprob | None) -> None:
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
            if req.adjust is not None:
                req.adjust.observe(tok)
            if lp is not None:
                req.token_logprobs.append(lp)
            self._send(req, tok, None)
            if req.generated >= req.max_tokens or req.pos >= self.max_len:
                reason = "length"
        if reason is not None:
            self._finish(req, reason)

    def _finish(self, req: GenRequest, reason: str, error: str | None = None) -> None:
        """Free ``req``'s slot and tell it why it ended (once)."""
        with self._cond:
            if req.finished:
                return
            req.finished = True
            if 0 <= req.slot < self.slots and self._active[req.slot] is req:
                self._active[req.slot] = None
        req.error = error
        self._send(req, None, reason)

    @staticmethod
    def _send(req: GenRequest, tok: int | None, reason: str | None) -> None:
        """``req.emit``, guarded: a callback that raises (its client's event loop is gone)
        cancels its own request, and its slot is freed on the next turn."""
        try:
            req.emit(tok, reason)
        except Exception:  # its consumer is broken, not the engine
            log.warning("serve engine: a request's callback failed; cancelling it", exc_info=True)
            req.cancelled = True
