"""What the preference stages (dpo, orpo, simpo) share: pairs as batches, one forward for both
replies, the per-sequence statistics every preference loss reads, and the held-out evaluation.

Data (``data.source``): ``embedded`` = the stdlib preference set (align/preferences.py), or a path
to a JSONL file of preference rows. Pairs are held out for validation by a hash of their id
(``data.val_fraction``). Each sequence of a pair is padded to ``sequence_len`` (targets −1 off the
final reply), so a micro-batch is ``device_batch_size`` pairs = twice as many sequences. Each epoch
shuffles the training pairs (seeded by ``train.seed`` and the epoch); the position
``{"epoch", "index"}`` restores the exact order on resume.

Batches are ``x = {"chosen", "rejected"}`` (input ids ``[M, B, T]``) and ``y = {"chosen",
"rejected"}`` (targets), plus ``ref_chosen``/``ref_rejected`` (``[M, B]``, the reference's summed
log-probs) for a stage that has a reference. The loss concatenates chosen and rejected along the
batch axis and runs the model once. Its unit is the pair: ``loss_sum`` is summed over pairs,
``count`` is the number of pairs, and every aux metric is a sum over pairs (the step divides by
the count), except ``logits/*``, scaled so that the step reports the mean logit over the
micro-batch's supervised tokens (TRL's definition, per micro-batch).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nanochat_tui.align.preferences import Pair, held_out, load_pairs, render_embedded
from nanochat_tui.errors import UserError
from nanochat_tui.jax_engine.evaluate import sample_replies
from nanochat_tui.jax_engine.tasks import Task, dataset_identity


class PairStats(NamedTuple):
    """Per-pair statistics of one forward pass (each ``[B]``): summed log-probs of the reply
    tokens, how many there are, summed per-token mean logits, and the reference's log-probs."""

    logp_c: Any
    logp_r: Any
    n_c: Any
    n_r: Any
    logit_c: Any
    logit_r: Any
    ref_c: Any = None
    ref_r: Any = None


def _row_stats(model: Any, h: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    logits = model.head(h)
    logp = jax.nn.log_softmax(logits, axis=-1)
    tok = jnp.take_along_axis(logp, jnp.maximum(y, 0)[:, None], axis=-1)[:, 0]
    valid = y >= 0
    mean_logit = jnp.mean(logits, axis=-1)
    return (
        jnp.sum(jnp.where(valid, tok, 0.0)),
        jnp.sum(valid).astype(jnp.float32),
        jnp.sum(jnp.where(valid, mean_logit, 0.0)),
    )


def sequence_stats(model: Any, ids: jax.Array, targets: jax.Array):
    """``(Σ log p, n, Σ mean logit)`` over the supervised tokens of each row of ``ids [N, T]``.

    The head runs one row at a time under ``jax.checkpoint``, so no more than one row of logits
    (``[T, V]`` fp32) is alive in the forward or the backward."""
    h = model.hidden(ids)
    row = jax.checkpoint(lambda hy: _row_stats(model, *hy))
    return jax.lax.map(row, (h, targets))


def pair_stats(model: Any, x: dict[str, Any], y: dict[str, Any]) -> PairStats:
    """One forward pass over chosen and rejected, concatenated along the batch axis."""
    ids = jnp.concatenate([x["chosen"], x["rejected"]])
    targets = jnp.concatenate([y["chosen"], y["rejected"]])
    logp, n, logit = sequence_stats(model, ids, targets)
    b = x["chosen"].shape[0]
    return PairStats(
        logp[:b], logp[b:], n[:b], n[b:], logit[:b], logit[b:],
        y.get("ref_chosen"), y.get("ref_rejected"),
    )  # fmt: skip


class PairLoss:
    """A preference loss: ``terms`` maps a batch's ``PairStats`` to per-pair losses and metrics;
    calling it is the Task loss contract (tasks/__init__.py). Subclasses are frozen dataclasses,
    so equal settings share one compiled step."""

    needs_reference: ClassVar[bool] = False

    def terms(self, s: PairStats) -> tuple[Any, dict[str, Any]]:
        """``(losses [B], {metric: [B]})`` (jnp on device or host arrays)."""
        raise NotImplementedError

    def __call__(self, model: Any, x: dict[str, Any], y: dict[str, Any]):
        s = pair_stats(model, x, y)
        losses, metrics = self.terms(s)
        b = losses.shape[0]
        aux = {k: jnp.sum(v) for k, v in metrics.items()}
        aux["logits/chosen"] = b * jnp.sum(s.logit_c) / jnp.maximum(jnp.sum(s.n_c), 1.0)
        aux["logits/rejected"] = b * jnp.sum(s.logit_r) / jnp.maximum(jnp.sum(s.n_r), 1.0)
        return jnp.sum(losses), jnp.asarray(b, jnp.float32), aux


def mean_logps(s: PairStats) -> tuple[Any, Any]:
    """Length-normalised (per-token) log-probs of chosen and rejected."""
    return s.logp_c / jnp.maximum(s.n_c, 1.0), s.logp_r / jnp.maximum(s.n_r, 1.0)


def reward_metrics(chosen: Any, rejected: Any) -> dict[str, Any]:
    """TRL's ``rewards/*`` from per-pair rewards (accuracy: chosen strictly above rejected)."""
    return {
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/margins": chosen - rejected,
        "rewards/accuracies": (chosen > rejected).astype(jnp.float32),
    }


def collate_pairs(pairs: list[Pair], row_len: int, bos: int) -> dict[str, np.ndarray]:
    """``{chosen_x, chosen_y, rejected_x, rejected_y}`` int32 ``[N, row_len - 1]``."""
    out = {}
    for side in ("chosen", "rejected"):
        ids = np.full((len(pairs), row_len), bos, np.int32)
        mask = np.zeros((len(pairs), row_len), bool)
        for i, p in enumerate(pairs):
            seq, m = getattr(p, f"{side}_ids"), getattr(p, f"{side}_mask")
            ids[i, : len(seq)], mask[i, : len(m)] = seq, m
        out[f"{side}_x"] = ids[:, :-1]
        out[f"{side}_y"] = np.where(mask[:, 1:], ids[:, 1:], -1).astype(np.int32)
    return out


def as_batch(arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``collate_pairs`` output as the loss's ``(x, y)``."""
    x = {"chosen": arrays["chosen_x"], "rejected": arrays["rejected_x"]}
    y = {"chosen": arrays["chosen_y"], "rejected": arrays["rejected_y"]}
    return x, y


@functools.cache
def _stats_jit():
    from flax import nnx

    return nnx.jit(pair_stats)


def stats_of(model: Any, x: dict[str, Any], y: dict[str, Any]) -> PairStats:
    """Jitted ``pair_stats`` (no donation: the model, e.g. a frozen reference, is only read)."""
    return _stats_jit()(model, x, y)


def all_stats(model: Any, pairs: list[Pair], bsz: int, row_len: int, bos: int) -> PairStats:
    """``PairStats`` of every pair as host float64 arrays, in fixed-size batches of ``bsz`` pairs
    (the last one padded by repeating pairs, so one compiled shape serves all)."""
    parts: list[list[np.ndarray]] = [[] for _ in range(6)]
    for start in range(0, len(pairs), bsz):
        chunk = pairs[start : start + bsz]
        padded = chunk + [chunk[0]] * (bsz - len(chunk))
        x, y = as_batch(collate_pairs(padded, row_len, bos))
        s = stats_of(model, x, y)
        for acc, value in zip(parts, s[:6], strict=True):
            acc.append(np.asarray(value, np.float64)[: len(chunk)])
    return PairStats(*(np.concatenate(p) for p in parts))


class PairBatches:
    """``M × B`` training pairs per step from a resumable position (module docstring)."""

    def __init__(self, task: PreferenceTask, position: dict[str, Any] | None) -> None:
        self.task = task
        pos = position or {"epoch": 0, "index": 0}
        self._epoch, self._index = int(pos["epoch"]), int(pos["index"])
        self.position = {"epoch": self._epoch, "index": self._index}
        self.data_wait = 0.0
        self._order: tuple[int, np.ndarray] | None = None

    def order(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            rng = np.random.default_rng([self.task.config.train.seed, epoch])
            self._order = (epoch, rng.permutation(len(self.task.train)))
        return self._order[1]

    def next(self) -> tuple[Any, Any]:
        start = time.perf_counter()
        task = self.task
        bsz, accum = task.config.train.device_batch_size, task.config.grad_accum_steps
        picked = []
        for _ in range(bsz * accum):
            if self._index >= len(task.train):
                self._epoch, self._index = self._epoch + 1, 0
            picked.append(int(self.order(self._epoch)[self._index]))
            self._index += 1
        x, y = task.batch_of(picked, accum, bsz)
        self.position = {"epoch": self._epoch, "index": self._index}
        self.data_wait += time.perf_counter() - start
        return x, y

    def close(self) -> None:
        """Nothing runs in the background."""

    @property
    def epoch_fraction(self) -> float:
        return self._epoch + self._index / max(1, len(self.task.train))


class PreferenceTask(Task):
    """Shared data, batches, evaluation and samples of the preference stages."""

    loss: ClassVar[PairLoss]
    headline: ClassVar[tuple[str, ...]] = (
        "eval_rewards/accuracies",
        "eval_rewards/margins",
        "val_loss",
    )

    def __init__(self, config: Any, tokenizer: Any, log) -> None:
        super().__init__(config, tokenizer, log)
        self.loss = self.make_loss(config.pref)  # type: ignore[misc]

    @classmethod
    def make_loss(cls, pref: Any) -> PairLoss:
        """The stage's loss for the ``pref`` config section."""
        raise NotImplementedError

    @property
    def row_len(self) -> int:
        return self.config.model.sequence_len + 1

    def load(self) -> tuple[list[Pair], str]:
        """Every pair of ``data.source`` and where they came from."""
        source = self.config.data.source
        if source == "embedded":
            pairs, skipped = render_embedded(self.tokenizer, self.row_len)
            if skipped:
                self.log(f"{skipped} embedded pairs are longer than sequence_len: skipped")
            return pairs, "the embedded stdlib preference set"
        path = Path(source).expanduser()
        if path.is_dir() or path.suffix != ".jsonl":
            raise UserError(
                f"the {self.stage} stage reads preference pairs from a .jsonl file, not {path}",
                'set data.source to a JSONL file of {"prompt", "chosen", "rejected"} lines, '
                'or "embedded"',
            )
        return load_pairs(path, self.tokenizer, self.row_len), str(path.resolve())

    def prepare(self) -> dict[str, Any]:
        if not self.config.run.init_from:
            self.log(
                f"{self.stage} from random weights: set run.init_from to an SFT run to align it"
            )
        pairs, where = self.load()
        fraction = self.config.data.val_fraction
        val = [p for p in pairs if held_out(p.id, fraction)]
        train = [p for p in pairs if not held_out(p.id, fraction)]
        if not val and len(train) > 1:
            val.append(train.pop())
        if not train or not val:
            raise UserError(
                f"{where} has too few preference pairs ({len(pairs)}) to train and validate on",
                "use at least two pairs (or a larger data.val_fraction)",
            )
        self.train, self.val, self.source = train, val, where
        self.log(f"{self.stage} data: {len(train)} train / {len(val)} held-out pairs from {where}")
        fields = self.prepare_reference()
        return {
            "train_tokens": int(sum(sum(p.chosen_mask) + sum(p.rejected_mask) for p in train)),
            "val_tokens": int(sum(sum(p.chosen_mask) + sum(p.rejected_mask) for p in val)),
            "train_pairs": len(train),
            "val_pairs": len(val),
            "dataset": dataset_identity(where, len(pairs), self.content(pairs)),
            **fields,
        }

    def content(self, pairs: list[Pair]) -> Iterable[bytes]:
        """What the dataset hash covers: a file's bytes, or the embedded pairs' rendered ids."""
        if self.config.data.source != "embedded":
            yield Path(self.config.data.source).expanduser().read_bytes()
            return
        for p in pairs:
            yield f"{p.id}:{p.chosen_ids}:{p.rejected_ids}\n".encode()

    def prepare_reference(self) -> dict[str, Any]:
        """Set up what the loss needs beyond the policy (none for reference-free stages)."""
        return {}

    def references(self, indices: list[int]) -> tuple[Any, Any] | None:
        """The reference's log-probs ``([N], [N])`` for training pairs, or None (no reference)."""
        return None

    def batch_of(self, indices: list[int], accum: int, bsz: int) -> tuple[Any, Any]:
        """Training pairs ``indices`` as an on-device ``(x, y)`` of ``[accum, bsz, ...]`` leaves."""
        arrays = collate_pairs(
            [self.train[i] for i in indices], self.row_len, self.tokenizer.bos_id
        )
        x, y = as_batch(arrays)
        device = jax.devices()[0]
        x, y = jax.device_put((x, y), device)
        refs = self.references(indices)
        if refs is not None:
            y = {**y, "ref_chosen": refs[0], "ref_rejected": refs[1]}
        shape = lambda a: a.reshape(accum, bsz, *a.shape[1:])  # noqa: E731
        return jax.tree.map(shape, x), jax.device_put(jax.tree.map(shape, y), device)

    def batches(self, position: dict[str, Any] | None) -> PairBatches:
        return PairBatches(self, position)

    def val_references(self) -> tuple[Any, Any] | None:
        """The reference's log-probs of the held-out pairs, or None (no reference)."""
        return None

    def evaluate(self, model: Any) -> dict[str, Any]:
        bsz, bos = self.config.train.device_batch_size, self.tokenizer.bos_id
        s = all_stats(model, self.val, bsz, self.row_len, bos)
        refs = self.val_references()
        if refs is not None:
            s = s._replace(ref_c=refs[0], ref_r=refs[1])
        losses, metrics = self.loss.terms(jax.tree.map(jnp.asarray, s))
        out: dict[str, Any] = {"eval_loss": float(jnp.mean(losses))}
        for name, values in metrics.items():
            out[f"eval_{name}"] = float(jnp.mean(values))
        out["eval_logits/chosen"] = float(s.logit_c.sum() / max(1.0, s.n_c.sum()))
        out["eval_logits/rejected"] = float(s.logit_r.sum() / max(1.0, s.n_r.sum()))
        out["val_loss"] = float(-s.logp_c.sum() / max(1.0, s.n_c.sum()))
        out["val_pairs"] = len(self.val)
        out["pairs"] = self.extremes(np.asarray(metrics["rewards/margins"]))
        return out

    def extremes(self, margins: np.ndarray, k: int = 2) -> dict[str, list[dict[str, Any]]]:
        """The held-out pairs with the highest and the lowest reward margin, as text."""
        order = np.argsort(margins, kind="stable")
        tok = self.tokenizer

        def show(i: int) -> dict[str, Any]:
            p = self.val[i]
            start = p.prompt_len + 1  # after <|assistant_start|>
            return {
                "id": p.id,
                "prompt": tok.decode(p.chosen_ids[1 : p.prompt_len])[:200],
                "chosen": tok.decode(p.chosen_ids[start:-1])[:200],
                "rejected": tok.decode(p.rejected_ids[start:-1])[:200],
                "margin": float(margins[i]),
            }

        k = min(k, len(order))
        return {
            "best": [show(int(i)) for i in order[::-1][:k]],
            "worst": [show(int(i)) for i in order[:k]],
        }

    def sample(self, model: Any, step: int) -> list[dict[str, str]]:
        prompts = [pair.chosen_ids[: pair.prompt_len + 1] for pair in self.val[:3]]
        return sample_replies(model, self.tokenizer, prompts, self.config.model.sequence_len, step)
