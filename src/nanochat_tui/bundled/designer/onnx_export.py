"""A design's forward pass as ONNX, through the ship exporter (``export/onnx_graph.py``).

The weights are the design's initialisation (``nnx.Rngs(train.seed)``): the graph is what a run of
the design trains, for inspection in Netron or a shape check in onnxruntime before any training.
A trained design exports with its weights through ``nanochat-tui export RUN --format onnx``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nanochat_tui.bundled.designer.design import Design, compile_config
from nanochat_tui.errors import UserError


def export_design_onnx(design: Design, base: Any, out: Path) -> Path:
    """Write ``design``'s forward pass to ``out`` (atomically); UserError for an MoE design or a
    missing onnx package, each with its remediation."""
    from flax import nnx

    from nanochat_tui.export.onnx_graph import build_model, require_onnx
    from nanochat_tui.export.source import ExportSource, param_arrays
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.rundir import atomic_path

    if design.moe is not None and any(layer.mlp == "moe" for _, layer in design.blocks):
        raise UserError(
            f"design {design.name} has MoE blocks, which have no ONNX form here",
            "export a dense variant of the design (mlp=relu2 or swiglu)",
        )
    onnx = require_onnx()
    config = compile_config(design, base)
    gpt = GPT(config.model, rngs=nnx.Rngs(config.train.seed))
    source = ExportSource(out, config, None, {"design": design.name}, param_arrays(gpt))
    model = build_model(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        onnx.save_model(model, str(tmp))
    return out
