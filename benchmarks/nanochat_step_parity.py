"""Step-for-step parity with karpathy/nanochat's own code: the same weights, the same batches.

Our model is initialised, converted to nanochat's names (export/nanochat_names.py) and loaded into
nanochat's ``GPT`` (imported from a checkout given by ``--nanochat``); both then take ``--steps``
optimizer steps on identical batches in fp32 on CPU, with nanochat's schedules (``base_train.py``:
lr warmup/warmdown, Muon momentum, Muon weight decay with its batch/horizon scaling, batch-size lr
scale). After each step every parameter and every optimizer state tensor is compared; the first
tensor that differs beyond float tolerance names the cause.

    .venv-export/bin/python benchmarks/nanochat_step_parity.py --nanochat DIR
        [--recipe nanochat-2026|nanochat-2025] [--steps 3] [--depth 2] [--num-iterations 120]

Needs torch (the export-check environment, docs/export.md) and a nanochat checkout at 92d63d4.
Prints a table (step, loss ours/theirs, the worst tensors) and exits 1 when a tensor differs.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("NANOCHAT_TUI_HOME", tempfile.mkdtemp(prefix="nanochat-step-parity-"))
os.environ.setdefault("NANOCHAT_DTYPE", "float32")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")

import numpy as np


def our_config(
    recipe: str, depth: int, seq: int, batch: int, vocab: int, iters: int, constant: bool = False
):
    from nanochat_tui.config import load_config

    sets = [
        f"model.recipe={recipe}",
        f"model.depth={depth}",
        "model.aspect_ratio=64",
        "model.head_dim=64",
        f"model.sequence_len={seq}",
        f"model.vocab_size={vocab}",
        f"train.device_batch_size={batch}",
        f"train.total_batch_size={batch * seq}",
        f"train.num_iterations={iters}",
        "train.dtype=float32",
    ]
    if constant:  # loss_parity.py's PARITY: no lr schedule, momentum fixed at its peak
        sets += ["optim.warmup_steps=0", "optim.warmdown_ratio=0"]
        sets += ["optim.muon_momentum_warmup_steps=0", "optim.grad_clip=0"]
    return load_config("tiny", sets)


def nanochat_modules(checkout: Path):
    """nanochat's gpt module, its ``torch.compile`` decorators made plain calls (no C++ compile
    on CPU; the math is the same)."""
    import torch

    def plain(fn=None, **_kw):
        return fn if fn is not None else (lambda f: f)

    compile_, torch.compile = torch.compile, plain
    sys.path.insert(0, str(checkout))
    try:
        import nanochat.gpt as gpt
    finally:
        torch.compile = compile_

    return gpt


def torch_model(gpt, config, weights: dict[str, np.ndarray], revision: str):
    import torch

    from nanochat_tui.export.nanochat_format import model_config
    from nanochat_tui.export.nanochat_names import to_nanochat

    m = config.model.resolved()
    cfg = gpt.GPTConfig(**model_config(m, revision))
    model = gpt.GPT(cfg)
    model.init_weights()  # rotary buffers; every parameter is overwritten below
    named = to_nanochat(weights, m.depth, revision, m.vocab_size)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)).float() for k, v in named.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    return model.float()


def nanochat_schedules(config, num_iterations: int) -> dict[str, Any]:
    """base_train.py's schedules and scalings for this shape (facts from nanochat@92d63d4)."""
    o = config.optim.resolved()
    total_batch = config.train.total_batch_size
    b_ref = 2**19
    batch_lr_scale = (total_batch / b_ref) ** 0.5 if o.batch_lr_scale else 1.0
    return {
        "batch_lr_scale": batch_lr_scale,
        "warmup": o.warmup_steps or 0,
        "warmdown_ratio": o.warmdown_ratio,
        "final_lr_frac": o.final_lr_frac,
        "n": num_iterations,
    }


def lr_multiplier(it: int, s: dict[str, Any]) -> float:
    warmdown = round(s["warmdown_ratio"] * s["n"])
    if it < s["warmup"]:
        return (it + 1) / s["warmup"]
    if it <= s["n"] - warmdown:
        return 1.0
    progress = (s["n"] - it) / warmdown
    return progress + (1 - progress) * s["final_lr_frac"]


def muon_momentum(it: int, s: dict[str, Any]) -> float:
    warmdown = round(s["warmdown_ratio"] * s["n"])
    start = s["n"] - warmdown
    if it < 400:
        frac = it / 400
        return (1 - frac) * 0.85 + frac * 0.97
    if it >= start:
        progress = (it - start) / warmdown
        return 0.97 * (1 - progress) + 0.90 * progress
    return 0.97


def warm_start(model) -> None:
    """Give the zero-initialised projections small random values, so that every parameter has a
    real gradient from step 0 (at the init, the blocks' outputs are zero and the residual scalars'
    gradients are float noise that Adam's first step turns into ±lr either way)."""
    import jax.numpy as jnp
    from flax import nnx

    rng = np.random.default_rng(1)
    for _, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        value = np.asarray(var[...])
        if value.ndim == 2 and not value.any():
            var[...] = jnp.asarray(rng.normal(0, 0.02, value.shape), value.dtype)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nanochat", type=Path, required=True, help="a karpathy/nanochat checkout")
    p.add_argument("--recipe", default="nanochat-2026", choices=["nanochat-2026"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--num-iterations", type=int, default=120)
    p.add_argument(
        "--muon-wd",
        type=float,
        default=None,
        help="nanochat's weight decay (default: base_train's scaled 0.28, as ours)",
    )
    p.add_argument(
        "--cold",
        dest="warm",
        action="store_false",
        help="start from the init as is (zero projections: every scalar's gradient is float noise)",
    )
    p.add_argument(
        "--data",
        choices=("corpus", "random"),
        default="corpus",
        help="batches cut from the embedded corpus by our tokenizer (default), or random tokens",
    )
    p.add_argument(
        "--constant",
        action="store_true",
        help="loss_parity.py's setting: lr multiplier 1 and Muon momentum 0.97 throughout",
    )
    p.add_argument("--all", action="store_true", help="print every tensor's difference")
    p.add_argument("--tol", type=float, default=1e-3, help="max relative difference per tensor")
    args = p.parse_args(argv)
    if not (args.nanochat / "nanochat" / "gpt.py").is_file():
        p.error(
            f"--nanochat {args.nanochat}: not a karpathy/nanochat checkout (no nanochat/gpt.py)"
        )
    if min(args.steps, args.depth, args.seq, args.batch, args.vocab, args.num_iterations) < 1:
        p.error("--steps, --depth, --seq, --batch, --vocab and --num-iterations must be >= 1")
    try:
        import torch
    except ImportError:
        p.error("needs torch: run it with the export-check environment (.venv-export/bin/python)")

    import jax
    import torch
    from flax import nnx

    from nanochat_tui.export.nanochat_names import to_nanochat
    from nanochat_tui.export.source import param_arrays
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.optim import build_optimizer, lr_schedule, muon_wd_scale
    from nanochat_tui.jax_engine.step import make_train_step

    torch.manual_seed(0)
    config = our_config(
        args.recipe,
        args.depth,
        args.seq,
        args.batch,
        args.vocab,
        args.num_iterations,
        args.constant,
    )
    revision = "2026"
    model = GPT(config.model, rngs=nnx.Rngs(config.train.seed), dtype=jax.numpy.float32)
    if args.warm:
        warm_start(model)
    optimizer = nnx.Optimizer(model, build_optimizer(model, config), wrt=nnx.Param)
    step_fn = make_train_step(model, optimizer, stack=False)

    gpt = nanochat_modules(args.nanochat)
    theirs = torch_model(gpt, config, param_arrays(model), revision)
    s = nanochat_schedules(config, args.num_iterations)
    o = config.optim.resolved()
    # base_train.py's weight_decay_scaled (ours: optim.muon_wd_scaling, on in the 2026 recipe)
    wd = o.muon_weight_decay * muon_wd_scale(config) if args.muon_wd is None else args.muon_wd
    topt = theirs.setup_optimizer(
        unembedding_lr=o.unembedding_lr * s["batch_lr_scale"],
        embedding_lr=o.embedding_lr * s["batch_lr_scale"],
        scalar_lr=o.scalar_lr * s["batch_lr_scale"],
        matrix_lr=o.matrix_lr * s["batch_lr_scale"],
        weight_decay=wd,
    )

    rng = np.random.default_rng(0)
    if args.data == "corpus":
        sys.path.insert(0, str(Path(__file__).parent))
        from loss_parity import make_data

        path = Path(tempfile.mkdtemp()) / "batches.npz"
        make_data(config, args.steps, 1, path)
        corpus = np.load(path)
    worst_overall = 0.0
    print(f"{'step':>4} {'loss ours':>12} {'loss nanochat':>14}  worst tensors (max |Δ| / max |x|)")
    for it in range(args.steps):
        if args.data == "corpus":
            x, y = corpus["x"][it], corpus["y"][it]
        else:
            x = rng.integers(0, args.vocab, (args.batch, args.seq), dtype=np.int32)
            y = np.roll(x, -1, axis=1)
        # theirs: base_train.py's step
        loss_t = theirs(torch.from_numpy(x).long(), torch.from_numpy(y).long())
        loss_t.backward()
        lrm = 1.0 if args.constant else lr_multiplier(it, s)
        for group in topt.param_groups:
            group["lr"] = group["initial_lr"] * lrm
            if group["kind"] == "muon":
                group["momentum"] = 0.97 if args.constant else muon_momentum(it, s)
                group["weight_decay"] = wd * 0.5 * (1 + math.cos(math.pi * it / s["n"]))
        topt.step()
        theirs.zero_grad(set_to_none=True)
        # ours
        scale = 1.0 if args.constant else lr_schedule(it, args.num_iterations, o)
        out = step_fn(model, optimizer, x[None], y[None], scale, o.grad_clip)
        ours_now = to_nanochat(param_arrays(model), args.depth, revision, args.vocab)
        rows = []
        for name, t in theirs.state_dict().items():
            a, b = ours_now[name], t.detach().numpy()
            rel = float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))
            rows.append((rel, name))
        rows.sort(reverse=True)
        if args.all:
            for r, n in rows:
                print(f"      {n:40s} {r:.2e}")
        worst_overall = max(worst_overall, rows[0][0])
        shown = ", ".join(f"{n} {r:.1e}" for r, n in rows[:3])
        print(f"{it:>4} {float(out.loss):>12.6f} {loss_t.item():>14.6f}  {shown}")
    ok = worst_overall <= args.tol
    print(f"worst relative parameter difference {worst_overall:.2e} ({'ok' if ok else 'DIFFERS'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
