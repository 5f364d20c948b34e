"""``export --format hf``: the files, their contents, the chat template, and the refusals
(no torch or transformers needed; the parity checks are in test_export_heavy.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export_helpers import CONVERSATIONS, make_run
from nanochat_tui.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("export-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(home))
        return make_run(home, "exp")


@pytest.fixture(scope="module")
def hf_dir(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "out"
    assert main(["export", str(run_dir), str(out), "--format", "hf"]) == 0
    return out


def test_writes_weights_config_and_tokenizer(hf_dir, run_dir):
    from safetensors.numpy import load_file

    from nanochat_tui.export.source import load_source

    names = {p.name for p in hf_dir.iterdir()}
    assert names == {
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    config = json.loads((hf_dir / "config.json").read_text())
    assert config["model_type"] == "nanochat"
    assert config["architectures"] == ["NanoChatForCausalLM"]
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (
        2,
        128,
        512,
    )
    assert config["num_attention_heads"] == 4 and config["intermediate_size"] == 512
    assert config["final_logit_softcapping"] == 15.0
    source = load_source(run_dir)
    tensors = load_file(str(hf_dir / "model.safetensors"))
    assert len(tensors) == 2 + 6 * 2
    np.testing.assert_array_equal(tensors["model.embed_tokens.weight"], source.weights["wte"])
    np.testing.assert_array_equal(
        tensors["model.layers.1.mlp.fc1.weight"], source.weights["blocks.1.mlp.c_fc"].T
    )
    assert tensors["lm_head.weight"].shape == (512, 128)
    assert (hf_dir / "tokenizer.json").read_text() == (run_dir / "tokenizer.json").read_text()


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_chat_template_renders_our_chat_format(hf_dir, run_dir, conversation):
    """Rendered with Jinja and tokenized, the template gives exactly align.chat's ids."""
    import jinja2

    from nanochat_tui.align.chat import render_conversation, render_for_completion
    from nanochat_tui.jax_engine.tokenizer import Tokenizer

    tok = Tokenizer.load(run_dir / "tokenizer.json")
    template = json.loads((hf_dir / "tokenizer_config.json").read_text())["chat_template"]
    env = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"])

    def ids(messages, generation):
        text = env.from_string(template).render(messages=messages, add_generation_prompt=generation)
        return tok.encode(text)

    if conversation[-1]["role"] == "assistant":
        assert ids(conversation, False) == render_conversation(tok, {"messages": conversation})[0]
    else:
        want = render_for_completion(tok, {"messages": conversation})
        assert ids(conversation, True) == want


def test_refuses_a_2026_model_naming_the_switches(run_dir, tmp_path, capsys):
    home = run_dir.parent
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(home))
        new = make_run(tmp_path, "new", {"model.recipe": "nanochat-2026"})
    out = tmp_path / "out"
    assert main(["export", str(new), str(out), "--format", "hf"]) == 2
    err = capsys.readouterr().err
    assert "cannot export" in err and "model.value_embeds=True" in err
    assert "model.window_pattern=SSSL" in err and "--format onnx" in err
    assert not out.exists()


def test_bad_input_is_one_message(run_dir, tmp_path, capsys):
    assert main(["export", str(tmp_path), str(tmp_path / "o"), "--format", "hf"]) == 2
    assert "no checkpoint found" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    assert main(["export", str(run_dir), str(busy), "--format", "hf"]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
