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
