"""The architecture designer — a plugin: compose a model from layers (per-block attention, MLP,
value embeddings), validate it and size it as you type, save it as a prefab and train it.

Registered only through the ``nanochat_tui.plugins`` entry point in pyproject.toml, like a
third-party package. A design compiles to ``model.width`` + ``model.blocks`` (and ``plugins.moe``
for MoE designs), which the engine trains; see docs/designer.md.
"""

from __future__ import annotations


def register(registry) -> None:
    """Entry point: the Designer pane (key ``D``)."""
    registry.add_screen(
        "designer", "Designer", "D", "nanochat_tui.bundled.designer.pane:DesignerPane", order=85
    )
