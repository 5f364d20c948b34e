"""DPO: push the policy's log-ratio of chosen over rejected above the reference's.

With ``h = (log π(c) − log π(r)) − (log π_ref(c) − log π_ref(r))`` (log-probs summed over each
reply's tokens; length-averaged for ``ipo``, as TRL does), β = ``pref.beta``, ε =
``pref.label_smoothing``, the per-pair loss (``pref.loss_type``) is

    sigmoid  −(1−ε)·log σ(βh) − ε·log σ(−βh)                      (DPO; ε = conservative DPO)
    robust   (−(1−ε)·log σ(βh) + ε·log σ(−βh)) / (1 − 2ε)          (rDPO)
    hinge    max(0, 1 − βh)                                        (SLiC)
    ipo      (h − 1/(2β))²                                         (IPO)

Metrics (TRL's names): ``rewards/chosen`` = β(log π(c) − log π_ref(c)), ``rewards/rejected`` the
same for r, ``rewards/margins`` their difference, ``rewards/accuracies`` the fraction of pairs
with chosen strictly above rejected, ``logps/*`` the policy's log-probs, ``logits/*`` its mean
logit over the reply tokens.

The reference is the frozen starting checkpoint (``run.init_from``). ``pref.reference``:
``precomputed`` computes its log-probs of every pair once, in ``prepare()``, and writes them beside
the dataset (for the embedded set, in the cache directory) keyed by checkpoint, tokenizer, model
and data, so later runs reuse them; ``live`` keeps the reference weights as a second params tree
(``pref.reference_dtype``, bf16 allowed), never donated or updated, and runs it on each batch.
Both give the same reference log-probs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from nanochat_tui import rundir
from nanochat_tui.errors import UserError
from nanochat_tui.jax_engine.tasks.preference import (
    PairLoss,
    PairStats,
    PreferenceTask,
    all_stats,
    as_batch,
    collate_pairs,
    mean_logps,
    reward_metrics,
    stats_of,
)

REF_FORMAT = 1


@dataclass(frozen=True)
class DPOLoss(PairLoss):
    beta: float = 0.1
    loss_type: str = "sigmoid"
    label_smoothing: float = 0.0

    needs_reference: ClassVar[bool] = True

    def terms(self, s: PairStats) -> tuple[Any, dict[str, Any]]:
        if self.loss_type == "ipo":
            pc, pr = mean_logps(s)
            rc, rr = s.ref_c / jnp.maximum(s.n_c, 1.0), s.ref_r / jnp.maximum(s.n_r, 1.0)
        else:
            pc, pr, rc, rr = s.logp_c, s.logp_r, s.ref_c, s.ref_r
        h = (pc - pr) - (rc - rr)
        b, e = self.beta, self.label_smoothing
        logsig = jax.nn.log_sigmoid
        if self.loss_type == "sigmoid":
            losses = -(1 - e) * logsig(b * h) - e * logsig(-b * h)
        elif self.loss_type == "robust":
            losses = (-(1 - e) * logsig(b * h) + e * logsig(-b * h)) / (1 - 2 * e)
        elif self.loss_type == "hinge":
            losses = jax.nn.relu(1 - b * h)
        elif self.loss_type == "ipo":
            losses = (h - 1 / (2 * b)) ** 2
        else:
            raise ValueError(f"unknown DPO loss_type {self.loss_type!r}")
        metrics = reward_metrics(b * (pc - rc), b * (pr - rr))
        metrics["logps/chosen"], metrics["logps/rejected"] = pc, pr
        return losses, metrics


class DPOTask(PreferenceTask):
    """Direct preference optimization against the frozen starting checkpoint."""

    stage = "dpo"
    loss = DPOLoss()

    @classmethod
    def make_loss(cls, pref: Any) -> DPOLoss:
        return DPOLoss(pref.beta, pref.loss_type, pref.label_smoothing)

    # ------------------------------------------------------------------ the reference

    def reference_model(self) -> Any:
        """The starting checkpoint's weights as a frozen model (``pref.reference_dtype``)."""
        from flax import nnx

        from nanochat_tui.jax_engine import checkpoint as ckpt
        from nanochat_tui.jax_engine.flops import compute_dtype
        from nanochat_tui.jax_engine.model import GPT
        from nanochat_tui.jax_engine.startup import check_tokenizer

        step_dir = ckpt.resolve_step_dir(self.config.run.init_from)
        check_tokenizer(ckpt.read_meta(step_dir), self.tokenizer, step_dir)
        model = GPT(self.config.model, rngs=nnx.Rngs(0), dtype=compute_dtype(self.config))
        ckpt.restore_into(step_dir, model)
        params = nnx.state(model, nnx.Param)
        if self.config.pref.reference_dtype == "bfloat16":
            params = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
        nnx.update(model, jax.device_put(params, jax.devices()[0]))
        return model

    def prepare_reference(self) -> dict[str, Any]:
        if not self.config.run.init_from:
            raise UserError(
                "dpo needs a reference: the starting checkpoint (run.init_from) is not set",
                "set run.init_from to the SFT run to align (its run dir or a step dir), or use "
                "train.stage=orpo or simpo, which need no reference",
            )
        from nanochat_tui.jax_engine import checkpoint as ckpt

        step_dir = ckpt.resolve_step_dir(self.config.run.init_from)
        bsz, bos = self.config.train.device_batch_size, self.tokenizer.bos_id
        mode = self.config.pref.reference
        self.ref_model = None
        path = self.reference_path(step_dir)
        cached = (
            _read_reference(path, self.reference_key(step_dir)) if mode == "precomputed" else None
        )
        if cached is not None:
            self.log(f"reference log-probs: reusing {path}")
            ref_train, ref_val = cached
        else:
            model = self.reference_model()
            ref_val = _logps(all_stats(model, self.val, bsz, self.row_len, bos))
            if mode == "live":
                self.ref_model = model
                ref_train = None
                self.log(f"live reference: {step_dir} held as frozen weights")
            else:
                ref_train = _logps(all_stats(model, self.train, bsz, self.row_len, bos))
                _write_reference(path, self.reference_key(step_dir), ref_train, ref_val)
                self.log(f"reference log-probs of {len(self.train) + len(self.val)} pairs "
                         f"written to {path}")  # fmt: skip
        self.ref_train, self.ref_val = ref_train, ref_val
        return {"reference": mode, "reference_checkpoint": str(step_dir)}

    def reference_key(self, step_dir: Path) -> str:
        """What the reference log-probs depend on: checkpoint, tokenizer, model, dtypes, pairs."""
        from nanochat_tui.jax_engine.flops import compute_dtype

        meta_file = rundir.meta_path(step_dir)
        digest = hashlib.blake2b(digest_size=16)
        parts = [
            REF_FORMAT, str(step_dir), self.tokenizer.hash,
            self.config.model.model_dump(mode="json"), str(jnp.dtype(compute_dtype(self.config))),
            self.config.pref.reference_dtype,
            meta_file.stat().st_mtime_ns if meta_file.exists() else None,
        ]  # fmt: skip
        digest.update(json.dumps(parts, sort_keys=True).encode())
        for p in (*self.train, *self.val):
            digest.update(json.dumps([p.id, p.chosen_ids, p.chosen_mask, p.rejected_ids,
                                      p.rejected_mask]).encode())  # fmt: skip
        return digest.hexdigest()

    def reference_path(self, step_dir: Path) -> Path:
        """Where precomputed reference log-probs live: beside a JSONL dataset, or in the cache."""
        key = hashlib.blake2b(str(step_dir).encode(), digest_size=6).hexdigest()
        source = self.config.data.source
        if source == "embedded":
            from nanochat_tui import paths

            return paths.cache_dir() / "preferences" / f"embedded.ref-{key}.npz"
        path = Path(source).expanduser()
        return path.with_name(f"{path.stem}.ref-{key}.npz")

    def references(self, indices: list[int]) -> tuple[Any, Any]:
        if self.ref_model is None:
            chosen, rejected = self.ref_train
            return chosen[indices], rejected[indices]
        pairs = [self.train[i] for i in indices]
        bsz = self.config.train.device_batch_size
        outs = []
        for start in range(0, len(pairs), bsz):
            x, y = as_batch(collate_pairs(pairs[start : start + bsz], self.row_len,
                                          self.tokenizer.bos_id))  # fmt: skip
            s = stats_of(self.ref_model, x, y)
            outs.append((s.logp_c, s.logp_r))
        return jnp.concatenate([o[0] for o in outs]), jnp.concatenate([o[1] for o in outs])

    def val_references(self) -> tuple[Any, Any]:
        return self.ref_val


def _logps(s: PairStats) -> tuple[np.ndarray, np.ndarray]:
    return s.logp_c.astype(np.float32), s.logp_r.astype(np.float32)


def _read_reference(path: Path, key: str) -> tuple[tuple, tuple] | None:
    """Stored reference log-probs if ``path`` holds them for ``key``; None otherwise."""
    try:
        with np.load(path) as f:
            if str(f["key"]) != key:
                return None
            return (f["train_c"], f["train_r"]), (f["val_c"], f["val_r"])
    except (OSError, KeyError, ValueError):
        return None


def _write_reference(path: Path, key: str, train: tuple, val: tuple) -> None:
    """Atomically write reference log-probs (tmp file + rename)."""
    try:
        with rundir.atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, key=np.asarray(key), train_c=train[0], train_r=train[1], val_c=val[0],
                     val_r=val[1])  # fmt: skip
    except OSError as err:
        raise UserError(
            f"cannot write reference log-probs to {path}: {err.strerror}",
            "make that folder writable, or set pref.reference=live",
        ) from None
