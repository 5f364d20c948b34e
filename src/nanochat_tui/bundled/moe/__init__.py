"""Mixture-of-Experts MLP layers, a live expert heat-map and size estimates — a plugin.

Registered only through the ``nanochat_tui.plugins`` entry point in pyproject.toml, exactly as a
third-party package would be; nothing in the core names it. Switched on per config with a
``plugins.moe`` section (config.py). Registering imports nothing heavy: every reference below is
a string, resolved when a config is validated, a panel is shown or a run starts.
"""

from __future__ import annotations

SHAPE_FIELDS = ("num_experts", "expert_dim", "shared_expert", "bias_balancing")


def register(registry) -> None:
    """Entry point: the config section, the engine hooks, the heat-map panel, the CLI command."""
    registry.add_category(
        "Mixture of experts",
        "plugins.moe",
        "nanochat_tui.bundled.moe.config:MoEConfig",
        shape_fields=SHAPE_FIELDS,
    )
    registry.add_engine_hooks("nanochat_tui.bundled.moe.hooks:engine_hooks")
    registry.add_panel(
        "moe-heatmap",
        "nanochat_tui.bundled.moe.heatmap:ExpertHeatmap",
        "expert load per layer × expert, relative to uniform, with a time scrubber",
    )
    registry.add_command(
        "moe", "nanochat_tui.bundled.moe.cli:COMMAND", "MoE size, FLOPs and memory of a config"
    )
