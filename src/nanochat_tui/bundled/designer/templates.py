"""Starting points: nanochat's dN models (depth N, width 64·N, heads of 128) and MoE variants."""

from __future__ import annotations

from nanochat_tui.bundled.designer.design import Design, Layer, MoESpec

DEPTHS = {"nanochat-d4": 4, "nanochat-d12": 12, "nanochat-d20": 20}
MOE_TEMPLATES = {"nanochat-d4-moe": 4, "nanochat-d12-moe": 12}


def names(moe: bool) -> list[str]:
    """Template names; the MoE variants only when the MoE plugin is enabled."""
    return list(DEPTHS) + (list(MOE_TEMPLATES) if moe else [])


def template(name: str, sequence_len: int = 2048, vocab_size: int = 65536) -> Design:
    """The template ``name`` at the given context and vocabulary (KeyError for an unknown name)."""
    depth = DEPTHS.get(name) or MOE_TEMPLATES[name]
    width = 64 * depth
    mlp = "moe" if name in MOE_TEMPLATES else "relu2"
    block = Layer(kind="block", n_head=width // 128, n_kv_head=width // 128, mlp=mlp)
    layers = [Layer(kind="embedding", width=width)]
    layers += [block.model_copy() for _ in range(depth)]
    layers += [Layer(kind="norm"), Layer(kind="head")]
    return Design(
        name=name,
        sequence_len=sequence_len,
        vocab_size=vocab_size,
        moe=MoESpec(num_experts=8, top_k=2) if mlp == "moe" else None,
        layers=layers,
    )
