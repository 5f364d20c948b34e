"""What plugins change in the engine, handed down as plain callables (the engine never imports
plugins; the orchestrator builds an ``EngineHooks`` from the registry and passes it to ``train``).

- ``mlp(cfg, layer, *, rngs, dtype) -> nnx.Module`` replaces every block's MLP; the module maps
  ``x [B, T, D] -> [B, T, D]`` and may keep per-forward statistics in non-Param variables
- ``loss_terms``: ``term(model) -> scalar``, read after the task's forward on one micro-batch
  (e.g. from those statistics); added to the loss as a per-token mean
- ``step_metrics``: ``metric(model) -> {name: scalar}``, token-weighted over micro-batches and
  reported in the step event's ``aux``
- ``param_label(names, leaf) -> group | None`` puts parameters in optimizer groups of the plugin's
  own (None: the engine's own labelling), and ``transforms`` maps those groups to
  ``factory(config) -> optax.GradientTransformation``
- ``shape``: plugin fields that shape parameters, recorded in checkpoint meta (``plugin_shape``)
  so a resume with other values is refused (config/compat.py)

An ``EngineHooks`` is a static argument of the jitted step, so it is frozen and holds
module-level functions (hashable).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EngineHooks:
    mlp: Callable[..., Any] | None = None
    loss_terms: tuple[Callable[[Any], Any], ...] = ()
    step_metrics: tuple[Callable[[Any], dict[str, Any]], ...] = ()
    param_label: Callable[[list[str], Any], str | None] | None = None
    transforms: tuple[tuple[str, Callable[[Any], Any]], ...] = ()
    names: tuple[str, ...] = ()  # the plugins these came from (for messages)
    shape: tuple[tuple[str, Any], ...] = ()  # ("plugins.moe.num_experts", 8): checkpoint meta

    @property
    def empty(self) -> bool:
        return not (
            self.mlp or self.loss_terms or self.step_metrics or self.param_label or self.transforms
        )
