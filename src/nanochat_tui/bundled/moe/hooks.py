"""The MoE plugin's engine hooks: the MLP factory, aux losses, step metrics, optimizer groups.

- experts ``w_fc [E, D, H]``/``w_proj [E, H, D]`` (and a shared expert's matrices) train with Muon,
  Newton–Schulz batched over the expert axis (``nanochat_muon`` orthogonalises each expert)
- the router trains with AdamW at ``router_lr``
- the balancing bias (``bias_balancing``) follows DeepSeek-V3's rule ``b_e ← b_e − u·sign(load_e −
  mean)``: a zero-valued loss term hands the optimizer ``load_e − mean`` as the bias's gradient and
  the ``moe_bias`` group steps by ``−u·sign(g)``

Step metrics (the step event's ``aux``), per layer ``i`` and expert ``j``: ``moe/L{i}/E{j}`` (share
of assignments), ``moe/L{i}/entropy`` (normalised router entropy), ``moe/L{i}/max_violation``,
``moe/L{i}/dead``, ``moe/L{i}/dropped``; and ``moe/lb_loss``, ``moe/z_loss`` (layer means).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from nanochat_tui.bundled.moe.config import MoEConfig
from nanochat_tui.bundled.moe.layer import STAT_NAMES, MoEMLP
from nanochat_tui.errors import UserError
from nanochat_tui.jax_engine.hooks import EngineHooks

EXPERT, ROUTER, BIAS = "moe_expert", "moe_router", "moe_bias"


def moe_config(config: Any) -> MoEConfig | None:
    """The run's MoE settings, or None when the section is absent or switched off."""
    section = config.plugins.get("moe")
    if not isinstance(section, dict):
        return None
    moe = MoEConfig.model_validate(section)
    return moe if moe.enabled else None


def _layers(model: Any) -> list[MoEMLP]:
    return [b.mlp for b in model.blocks if isinstance(b.mlp, MoEMLP)]


def aux_losses(coefs: tuple[float, float], model: Any) -> jax.Array:
    """``lb_coef·mean lb + z_coef·mean z`` over layers, plus the bias's zero-valued term."""
    layers = _layers(model)
    lb = jnp.mean(jnp.stack([m.stats[...][0] for m in layers]))
    z = jnp.mean(jnp.stack([m.stats[...][1] for m in layers]))
    total = coefs[0] * lb + coefs[1] * z
    for m in layers:
        if m.bias is not None:
            b = m.bias[...]
            push = jnp.sum(b * jax.lax.stop_gradient(m.load[...] - 1.0 / b.shape[0]))
            total = total + push - jax.lax.stop_gradient(push)
    return total


def step_metrics(model: Any) -> dict[str, jax.Array]:
    out: dict[str, jax.Array] = {}
    layers = _layers(model)
    for i, m in enumerate(layers):
        load, stats = m.load[...], m.stats[...]
        for j in range(load.shape[0]):
            out[f"moe/L{i}/E{j}"] = load[j]
        for k, name in enumerate(STAT_NAMES[2:], start=2):
            out[f"moe/L{i}/{name}"] = stats[k]
    out["moe/lb_loss"] = jnp.mean(jnp.stack([m.stats[...][0] for m in layers]))
    out["moe/z_loss"] = jnp.mean(jnp.stack([m.stats[...][1] for m in layers]))
    return out


def param_label(names: list[str], leaf: Any) -> str | None:
    names = [n for n in names if n != "value"]  # nnx paths end in the variable's "value"
    if "mlp" not in names:
        return None
    last = names[-1]
    if last in ("w_fc", "w_proj", "shared_fc", "shared_proj"):
        return EXPERT
    if last == "router":
        return ROUTER
    if last == "bias":
        return BIAS
    return None


def make_mlp(moe: MoEConfig, cfg: Any, layer: int, *, rngs: Any, dtype: Any) -> MoEMLP:
    del layer
    return MoEMLP(cfg, moe, rngs=rngs, dtype=dtype)


def expert_muon(config: Any) -> optax.GradientTransformation:
    """Muon for expert matrices with the run's recipe switches, batched over the expert axis."""
    from nanochat_tui.jax_engine.optim import recipe_muon

    return recipe_muon(config)


def router_adamw(config: Any) -> optax.GradientTransformation:
    moe = moe_config(config)
    o = config.optim.resolved()
    lr = moe.router_lr if moe else MoEConfig().router_lr
    return optax.adamw(lr, b1=o.adam_beta1, b2=o.adam_beta2, eps=1e-10, weight_decay=0.0)


def bias_sign(config: Any) -> optax.GradientTransformation:
    moe = moe_config(config)
    rate = moe.bias_rate if moe else MoEConfig().bias_rate
    return optax.chain(optax.scale_by_sign(), optax.scale(-rate))


@functools.cache
def _hooks(moe: MoEConfig) -> EngineHooks:
    coefs = (moe.lb_loss_coef, moe.z_loss_coef)
    return EngineHooks(
        mlp=functools.partial(make_mlp, moe),
        loss_terms=(functools.partial(aux_losses, coefs),),
        step_metrics=(step_metrics,),
        param_label=param_label,
        transforms=((EXPERT, expert_muon), (ROUTER, router_adamw), (BIAS, bias_sign)),
        names=("moe",),
    )


def engine_hooks(config: Any) -> EngineHooks | None:
    """The registered factory: MoE hooks when ``plugins.moe`` is on, else None."""
    moe = moe_config(config)
    if moe is None:
        return None
    if config.model.remat:
        raise UserError(
            "plugins.moe does not support model.remat yet (routing statistics live in the forward)",
            "set model.remat=false",
        )
    return _hooks(moe)
