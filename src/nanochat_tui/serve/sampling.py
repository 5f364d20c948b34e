"""Per-row sampling on the device, and what a request's optional settings add to it.

``sample_rows`` draws one id per row of a batch, each row with its own temperature, top-k, top-p
and seed. Before it, ``adjust_logits`` adds a sparse per-row change: ``logit_bias`` and OpenAI's
presence/frequency penalties, for the tokens this request generated so far (not the prompt)::

    logit[j] += bias[j] - count[j] * frequency_penalty - (count[j] > 0) * presence_penalty

``token_logprobs`` reports log-probabilities: the log-softmax of the model's own logits (softcap
included), before the bias, penalties, temperature, top-k and top-p, as OpenAI reports them (and
vLLM by default), so they describe the model, not the request's sampling settings.

The engine runs the adjusting sampler and ``token_logprobs`` only for batches with a row that asks
for them: a batch without bias, penalties or logprobs runs exactly the plain sampler.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

TOP_LOGPROBS = 20  # the most alternatives a token's logprobs report (OpenAI's bound)


class TokenLogprob(NamedTuple):
    """One generated token's log-probability and the ``top`` most likely ``(id, logprob)``."""

    logprob: float
    top: list[tuple[int, float]]


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


def adjust_logits(logits: jax.Array, ids: jax.Array, deltas: jax.Array) -> jax.Array:
    """``logits[B, V]`` with ``deltas[b, j]`` added at ``ids[b, j]`` (padding: delta 0)."""
    rows = jnp.arange(logits.shape[0])[:, None]
    return logits.astype(jnp.float32).at[rows, ids].add(deltas)


def sample_adjusted(logits, ids, deltas, seeds, counters, temperature, top_k, top_p) -> jax.Array:
    """``sample_rows`` after ``adjust_logits`` (greedy rows take the argmax of the adjusted)."""
    return sample_rows(
        adjust_logits(logits, ids, deltas), seeds, counters, temperature, top_k, top_p
    )


def token_logprobs(
    logits: jax.Array, ids: jax.Array, k: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(logprob of ``ids[b]``, the ``k`` largest logprobs, their ids) per row of ``logits``."""
    lp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    chosen = jnp.take_along_axis(lp, ids[:, None], axis=-1)[:, 0]
    top, top_ids = jax.lax.top_k(lp, k)
    return chosen, top, top_ids


class LogitAdjust:
    """One request's additive logit changes (``logit_bias`` plus penalties), kept up to date as
    its tokens are sampled; ``delta`` maps token id -> what to add."""

    def __init__(self, bias: dict[int, float], presence: float, frequency: float) -> None:
        self.bias, self.presence, self.frequency = bias, presence, frequency
        self.counts: dict[int, int] = {}
        self.delta: dict[int, float] = dict(bias)

    def __bool__(self) -> bool:
        return bool(self.delta)

    def observe(self, tok: int) -> None:
        """Count a generated token (only penalties need the count)."""
        if self.presence or self.frequency:
            count = self.counts[tok] = self.counts.get(tok, 0) + 1
            self.delta[tok] = self.bias.get(tok, 0.0) - count * self.frequency - self.presence


def adjustment_arrays(adjusts: list[LogitAdjust | None], width: int) -> tuple[np.ndarray, ...]:
    """``(ids, deltas)``, each ``[rows, width]``, for ``adjust_logits`` (zeros pad: id 0 += 0)."""
    ids = np.zeros((len(adjusts), width), np.int32)
    deltas = np.zeros((len(adjusts), width), np.float32)
    for row, adjust in enumerate(adjusts):
        if adjust:
            n = len(adjust.delta)
            ids[row, :n] = np.fromiter(adjust.delta.keys(), np.int32, n)
            deltas[row, :n] = np.fromiter(adjust.delta.values(), np.float32, n)
    return ids, deltas
