"""``--format hf``: a folder transformers loads as its own ``nanochat`` model type.

    OUT/model.safetensors        fp32 weights, named as ``NanoChatForCausalLM`` names them
    OUT/config.json              ``NanoChatConfig`` (model_type "nanochat")
    OUT/generation_config.json   bos/eos/pad ids; generation stops where our chat does
    OUT/tokenizer.json           the run's tokenizer, unchanged
    OUT/tokenizer_config.json    special tokens and a chat template rendering our chat format

The ``nanochat`` type is karpathy/nanochat's 2025 architecture. A model using any switch it has
no parameter for (value embeddings, residual scalars, smear, backout, sliding windows, a QK
scale, a padded vocabulary) is refused with the list of them (``config.recipes.hf_loadable``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nanochat_tui.config.recipes import hf_loadable
from nanochat_tui.errors import UserError
from nanochat_tui.export.chat_template import CHAT_TEMPLATE
from nanochat_tui.export.source import ExportSource
from nanochat_tui.rundir import atomic_path, write_atomic

# our weight path -> the transformers name (``{i}`` = layer), and whether to transpose it
_LAYER_NAMES = {
    "attn.c_q": "self_attn.q_proj",
    "attn.c_k": "self_attn.k_proj",
    "attn.c_v": "self_attn.v_proj",
    "attn.c_proj": "self_attn.o_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
# Where generation stops, as in ``ChatModel.chat``: the end of the reply, a new document or turn.
STOP_TOKENS = ("<|assistant_end|>", "<|bos|>", "<|user_start|>")


def refusal(source: ExportSource, target: str = "Hugging Face's nanochat type") -> str | None:
    """Why ``source`` cannot be exported as the 2025 architecture (None when it can)."""
    if source.config.model.blocks is not None:
        kinds = {b.mlp for b in source.config.model.block_settings()}
        swiglu = " and SwiGLU MLPs" if "swiglu" in kinds else ""
        return (
            f"{target} builds identical ReLU² blocks, not per-block settings (model.blocks){swiglu}"
        )
    bad = hf_loadable(source.config.model)
    if not bad:
        return None
    m = source.model
    shown = ", ".join(f"model.{k}={getattr(m, k)}" for k in bad)
    return f"{target} cannot represent {shown} (recipe {m.recipe})"


def check_exportable(source: ExportSource) -> None:
    """Raise a UserError naming every switch the nanochat type cannot represent."""
    why = refusal(source)
    if why:
        raise UserError(
            f"cannot export {source.path} to Hugging Face: {why}",
            "export it with --format onnx (every switch) instead, or train with "
            "model.recipe=nanochat-2025 and those switches at their nanochat-2025 values",
        )


def hf_state_dict(source: ExportSource) -> dict[str, np.ndarray]:
    """The weights under transformers' names, torch's ``[out, in]`` layout, fp32, contiguous."""
    w = source.weights
    out = {
        "model.embed_tokens.weight": w["wte"],
        "lm_head.weight": w["lm_head"].T,
    }
    for i in range(source.model.depth):
        for ours, theirs in _LAYER_NAMES.items():
            out[f"model.layers.{i}.{theirs}.weight"] = w[f"blocks.{i}.{ours}"].T
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def hf_config(source: ExportSource) -> dict:
    """``config.json`` for ``NanoChatForCausalLM``."""
    m, tok = source.model, source.tokenizer
    return {
        "architectures": ["NanoChatForCausalLM"],
        "model_type": "nanochat",
        "vocab_size": m.vocab_size,
        "hidden_size": m.model_dim,
        "intermediate_size": 4 * m.model_dim,
        "num_hidden_layers": m.depth,
        "num_attention_heads": m.n_head,
        "num_key_value_heads": m.kv_heads,
        "max_position_embeddings": m.sequence_len,
        "hidden_act": "relu2",
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": float(m.rope_base)},
        "final_logit_softcapping": float(m.softcap) if m.softcap > 0 else None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        "bos_token_id": tok.bos_id,
        "eos_token_id": tok.special("<|assistant_end|>"),
        "pad_token_id": tok.special("<|assistant_end|>"),
        "dtype": "float32",
        "use_cache": True,
    }


def generation_config(source: ExportSource) -> dict:
    tok = source.tokenizer
    return {
        "bos_token_id": tok.bos_id,
        "eos_token_id": [tok.special(s) for s in STOP_TOKENS],
        "pad_token_id": tok.special("<|assistant_end|>"),
    }


def tokenizer_config(source: ExportSource) -> dict:
    """``tokenizer_config.json``: the fast tokenizer over tokenizer.json, with our chat template."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|bos|>",
        "eos_token": "<|assistant_end|>",
        "pad_token": "<|assistant_end|>",
        "model_max_length": source.model.sequence_len,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }


def export_hf(source: ExportSource, out: Path) -> list[Path]:
    """Write the Hugging Face folder into ``out`` (an existing directory); returns the files."""
    from safetensors.numpy import save_file

    check_exportable(source)
    weights = out / "model.safetensors"
    with atomic_path(weights) as tmp:
        save_file(hf_state_dict(source), str(tmp), metadata={"format": "pt"})
    files = [weights]
    for name, data in (
        ("config.json", hf_config(source)),
        ("generation_config.json", generation_config(source)),
        ("tokenizer_config.json", tokenizer_config(source)),
    ):
        write_atomic(out / name, json.dumps(data, indent=2) + "\n")
        files.append(out / name)
    write_atomic(out / "tokenizer.json", source.tokenizer.to_str())
    files.append(out / "tokenizer.json")
    return files
