"""The two nanochat recipes as defaults for the switches in ``model`` and ``optim``.

A switch left empty (None) in the config takes its recipe's value; a value set in the config always
wins, so a researcher ablates one piece of ``nanochat-2026`` by setting just that field. Facts from
karpathy/nanochat (``nanochat/gpt.py``, ``nanochat/optim.py``, ``scripts/base_train.py``).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

RECIPES: tuple[str, ...] = ("nanochat-2025", "nanochat-2026")

# section -> field -> (nanochat-2025, nanochat-2026)
DEFAULTS: dict[str, dict[str, tuple[Any, Any]]] = {
    "model": {
        "rope_base": (10000.0, 100000.0),
        "qk_scale": (1.0, 1.2),
        "value_embeds": (False, True),
        "residual_scalars": (False, True),
        "smear": (False, True),
        "backout": (False, True),
        "window_pattern": ("L", "SSSL"),
        "init": ("nanochat-2025", "nanochat-2026"),
        "vocab_multiple": (1, 64),
    },
    "optim": {
        "embedding_lr": (0.2, 0.3),
        "unembedding_lr": (0.004, 0.008),
        "adamw_per_group": (False, True),
        "muon_momentum": (0.95, 0.97),
        "muon_momentum_warmup_steps": (300, 400),
        "muon_momentum_final": (None, 0.90),  # None: stays at muon_momentum
        "muon_polar_express": (False, True),
        "muon_normuon": (False, True),
        "muon_renorm": (False, True),
        "muon_weight_decay": (0.0, 0.28),
        "muon_wd_scaling": (False, True),
        "muon_cautious_wd": (False, True),
        "batch_lr_scale": (False, True),
        "warmup_steps": (0, 40),
        "warmdown_ratio": (0.2, 0.65),
        "final_lr_frac": (0.0, 0.05),
        "grad_clip": (1.0, 0.0),
    },
}

S = TypeVar("S", bound=BaseModel)


def section_name(section: BaseModel) -> str:
    return "model" if type(section).__name__ == "ModelConfig" else "optim"


def resolve_section(section: S, recipe: str) -> S:
    """``section`` with its empty recipe fields filled in from ``recipe``."""
    column = RECIPES.index(recipe)
    fields = DEFAULTS[section_name(section)]
    update = {k: v[column] for k, v in fields.items() if getattr(section, k) is None}
    out = section.model_copy(update=update)
    if getattr(out, "muon_momentum_final", 0) is None:
        out = out.model_copy(update={"muon_momentum_final": out.muon_momentum})
    return out


def switches(config: Any) -> dict[str, Any]:
    """Every recipe switch of ``config`` (a Config), resolved: ``{"model.smear": True, ...}``."""
    model, optim = config.model.resolved(), config.optim.resolved()
    out: dict[str, Any] = {"model.recipe": config.model.recipe}
    out.update({f"model.{k}": getattr(model, k) for k in DEFAULTS["model"]})
    out.update({f"optim.{k}": getattr(optim, k) for k in DEFAULTS["optim"]})
    return out


def hf_loadable(model: Any) -> list[str]:
    """The resolved model switches Hugging Face's ``nanochat`` type cannot load (empty = loadable)."""
    m = model.resolved()
    base = {k: v[0] for k, v in DEFAULTS["model"].items() if k != "init"}
    return [k for k, v in base.items() if getattr(m, k) != v and k != "vocab_multiple"] + (
        ["vocab_multiple"] if m.padded_vocab != m.vocab_size else []
    )
