"""Parity of the exported formats with the JAX model: transformers, onnxruntime and the nanochat
round trip. Needs the export-check dependency group and CPU torch (docs/export.md); skipped with
the reason without them, and an error instead under NANOCHAT_TUI_REQUIRE_HEAVY=1 (.ci/run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export_helpers import CONVERSATIONS, RECIPE_2026, SEQUENCES, jax_logits, make_run, require
from nanochat_tui.cli import main

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def needs_hf() -> None:
    """Listed first by a test, so a missing package skips it before any model is built."""
    require("torch", "transformers")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("heavy-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(home))
        return make_run(home, "heavy")


@pytest.fixture(scope="module")
def reference(run_dir) -> list[np.ndarray]:
    return [jax_logits(run_dir, ids) for ids in SEQUENCES]


@pytest.fixture(scope="module")
def hf_dir(needs_hf, run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "out"
    assert main(["export", str(run_dir), str(out), "--format", "hf"]) == 0
    return out


def test_transformers_logits_equal_jax(needs_hf, hf_dir, reference):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    assert type(model).__name__ == "NanoChatForCausalLM"
    for ids, want in zip(SEQUENCES, reference, strict=True):
        with torch.no_grad():
            got = model(torch.tensor([ids])).logits[0].float().numpy()
        assert np.abs(got - want).max() <= 1e-4


def test_apply_chat_template_gives_our_ids(needs_hf, hf_dir, run_dir):
    from transformers import AutoTokenizer

    from nanochat_tui.align.chat import render_conversation, render_for_completion
    from nanochat_tui.jax_engine.tokenizer import Tokenizer

    ours = Tokenizer.load(run_dir / "tokenizer.json")
    theirs = AutoTokenizer.from_pretrained(hf_dir)
    for conversation in CONVERSATIONS:
        closed = conversation[-1]["role"] == "assistant"
        got = theirs.apply_chat_template(
            conversation, add_generation_prompt=not closed, tokenize=True, return_dict=False
        )
        want = (
            render_conversation(ours, {"messages": conversation})[0]
            if closed
            else render_for_completion(ours, {"messages": conversation})
        )
        assert list(got) == want
    text = "Hello, wörld! 123 <|bos|>"
    assert theirs(text, add_special_tokens=False)["input_ids"] == ours.encode(text)
    assert theirs.decode(ours.encode(text)) == text


def test_greedy_generate_equals_ours(needs_hf, hf_dir, run_dir):
    """Greedy decoding with the exported generation config stops where ours does."""
    import torch
    from transformers import AutoModelForCausalLM

    from nanochat_tui.export.hf import STOP_TOKENS
    from nanochat_tui.jax_engine.inference import ChatModel
    from nanochat_tui.jax_engine.sample import generate

    cm = ChatModel.load(run_dir)
    stops = [cm.tokenizer.special(s) for s in STOP_TOKENS]
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    chat = cm.tokenizer.render_conversation(
        [{"role": "user", "content": "hi"}], for_completion=True
    )
    for prompt in (SEQUENCES[0], SEQUENCES[1][:10], chat):
        ours = list(generate(cm.model, prompt, max_new_tokens=24, temperature=0, stop_ids=stops))
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False)
        theirs = out[0, len(prompt) :].tolist()
        if theirs and theirs[-1] in stops:
            theirs = theirs[:-1]
        assert theirs == ours


@pytest.fixture(scope="module")
def needs_ort() -> None:
    require("onnxruntime", "onnx")


@pytest.fixture(scope="module")
def run_2026(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("heavy-2026")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(home))
        return make_run(home, "heavy26", RECIPE_2026)


@pytest.mark.parametrize("which", ["run_dir", "run_2026"])
def test_onnxruntime_logits_equal_jax(needs_ort, which, request, tmp_path):
    """Both recipes (2026: GQA, sliding window, value embeddings, smear, backout, scalars, padded
    vocabulary), several sequence lengths and a batch of two in one session."""
    import onnxruntime as ort

    run = request.getfixturevalue(which)
    out = tmp_path / "onnx"
    assert main(["export", str(run), str(out), "--format", "onnx"]) == 0
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for ids in SEQUENCES:
        want = jax_logits(run, ids)
        (got,) = session.run(["logits"], {"input_ids": np.array([ids], np.int64)})
        assert np.abs(got[0] - want).max() <= 1e-4
    pair = np.array([SEQUENCES[0], SEQUENCES[0][::-1]], np.int64)
    (got,) = session.run(["logits"], {"input_ids": pair})
    assert np.abs(got[1] - jax_logits(run, SEQUENCES[0][::-1])).max() <= 1e-4


@pytest.fixture(scope="module")
def needs_torch() -> None:
    require("torch", "tiktoken", "transformers")


TEXTS = [
    "Hello, wörld! 123 4567  \n\n  tabs\t",
    "def f(x):\n    return x ** 2\n",
    "日本語",
    " a" * 30,
]


def test_nanochat_round_trip_gives_identical_logits(needs_torch, run_dir, tmp_path):
    """export --format nanochat, then import: the same weights bit for bit, and the
    tokenizer.pkl is one real tiktoken loads and encodes like ours."""
    import pickle

    from nanochat_tui.jax_engine.tokenizer import Tokenizer

    out, back = tmp_path / "nc", tmp_path / "back"
    assert main(["export", str(run_dir), str(out), "--format", "nanochat"]) == 0
    assert main(["import", str(out), str(back)]) == 0
    for ids in SEQUENCES:
        assert np.array_equal(jax_logits(back, ids), jax_logits(run_dir, ids))
    ours = Tokenizer.load(run_dir / "tokenizer.json")
    with open(out / "tokenizer.pkl", "rb") as f:
        enc = pickle.load(f)
    assert type(enc).__module__ == "tiktoken.core" and enc.n_vocab == ours.vocab_size
    imported = Tokenizer.load(back / "tokenizer.json")
    for text in TEXTS:
        assert enc.encode_ordinary(text) == ours.encode(text) == imported.encode(text)


def _stock_checkpoint(base: Path, run_dir: Path) -> tuple[Path, dict, list[int]]:
    """A checkpoint as nanochat writes it: its names under torch.compile's ``_orig_mod.``, a bf16
    embedding, GQA, identity residual scalars, the tokenizer's special tokens after the BPE
    ranks, in ``<base>/base_checkpoints/d2`` with ``<base>/tokenizer/tokenizer.pkl``."""
    import json
    import pickle

    import tiktoken
    import torch

    from nanochat_tui.export.tiktoken_pkl import ranks_of
    from nanochat_tui.jax_engine.tokenizer import SPLIT_PATTERN, Tokenizer

    ranks, specials = ranks_of(Tokenizer.load(run_dir / "tokenizer.json"))
    n = len(specials)
    ranks = {token: idx - n for token, idx in ranks.items()}
    specials = {name: len(ranks) + i for i, name in enumerate(sorted(specials, key=specials.get))}
    enc = tiktoken.Encoding(
        name="rustbpe", pat_str=SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens=specials
    )
    (base / "tokenizer").mkdir(parents=True)
    with open(base / "tokenizer" / "tokenizer.pkl", "wb") as f:
        pickle.dump(enc, f)
    vocab, d, heads, kv, layers = enc.n_vocab, 128, 4, 2, 2
    g = torch.Generator().manual_seed(0)
    state = {"transformer.wte.weight": torch.randn(vocab, d, generator=g).bfloat16()}
    for i in range(layers):
        p = f"transformer.h.{i}"
        shapes = {
            "attn.c_q": (heads * 32, d),
            "attn.c_k": (kv * 32, d),
            "attn.c_v": (kv * 32, d),
            "attn.c_proj": (d, d),
            "mlp.c_fc": (4 * d, d),
            "mlp.c_proj": (d, 4 * d),
        }
        for key, shape in shapes.items():
            state[f"{p}.{key}.weight"] = torch.randn(*shape, generator=g) * 0.3
    state["lm_head.weight"] = torch.randn(vocab, d, generator=g) * 0.3
    state["resid_lambdas"], state["x0_lambdas"] = torch.ones(layers), torch.zeros(layers)
    folder = base / "base_checkpoints" / "d2"
    folder.mkdir(parents=True)
    torch.save({f"_orig_mod.{k}": v for k, v in state.items()}, folder / "model_000020.pt")
    config = {"sequence_len": 64, "vocab_size": vocab, "n_layer": layers, "n_head": heads}
    config |= {"n_kv_head": kv, "n_embd": d, "window_pattern": "L"}
    meta = {"step": 20, "val_bpb": 1.5, "model_config": config, "user_config": {}}
    (folder / "meta_000020.json").write_text(json.dumps(meta))
    return folder, state, [enc.encode_single_token("<|bos|>"), *enc.encode_ordinary(TEXTS[1])]


def test_import_of_a_stock_checkpoint_matches_transformers(needs_torch, run_dir, tmp_path):
    """The imported run's logits equal transformers' nanochat model holding the same tensors,
    and its tokenizer encodes as nanochat's tiktoken does."""
    import pickle

    import torch
    from transformers import NanoChatConfig, NanoChatForCausalLM

    from nanochat_tui.export.hf import _LAYER_NAMES
    from nanochat_tui.jax_engine.inference import ChatModel

    folder, state, ids = _stock_checkpoint(tmp_path / "nanochat", run_dir)
    out = tmp_path / "imported"
    assert main(["import", str(folder), str(out)]) == 0
    cm = ChatModel.load(out)
    assert (cm.config.model.depth, cm.config.model.kv_heads, cm.meta["stage"]) == (2, 2, "pretrain")
    assert cm.meta["metrics"]["val_bpb"]["value"] == 1.5
    with open(tmp_path / "nanochat" / "tokenizer" / "tokenizer.pkl", "rb") as f:
        enc = pickle.load(f)
    for text in TEXTS:
        assert cm.tokenizer.encode(text) == enc.encode_ordinary(text)
    assert cm.tokenizer.bos_id == enc.encode_single_token("<|bos|>")

    config = NanoChatConfig(
        vocab_size=state["lm_head.weight"].shape[0],
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    reference = NanoChatForCausalLM(config).eval()
    renamed = {
        "model.embed_tokens.weight": state["transformer.wte.weight"].float(),
        "lm_head.weight": state["lm_head.weight"],
    }
    for i in range(2):
        for ours, theirs in _LAYER_NAMES.items():
            renamed[f"model.layers.{i}.{theirs}.weight"] = state[f"transformer.h.{i}.{ours}.weight"]
    reference.load_state_dict(renamed, strict=True)
    with torch.no_grad():
        want = reference(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(jax_logits(out, ids) - want).max() <= 1e-4
