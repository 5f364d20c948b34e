"""Task evals: nanochat's JSONL task formats, the embedded stdlib task and its held-out split,
choice scoring against a NumPy log-softmax reference on a fixed tiny model, generative exact match,
and the saved results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nanochat_tui.align.tasks import (
    SFT_VAL_FRACTION,
    ChoiceItem,
    GenerativeItem,
    extract_answer,
    load_task,
    load_task_file,
    read_results,
    render_mc,
)
from nanochat_tui.errors import UserError

ROWS = {
    "core": {"query": "The capital of France is", "choices": ["Paris", "Rome"], "gold": 0},
    "arc": {
        "question": "Which is a gas?",
        "choices": {"text": ["ice", "steam", "rock"], "label": ["A", "B", "C"]},
        "answerKey": "B",
    },
    "mmlu": {"question": "2+2?", "choices": ["3", "4", "5", "6"], "answer": 1},
    "gsm8k": {"question": "What is 2+3?", "answer": "2+3=<<2+3=5>>5\n#### 5"},
}


def write(path: Path, rows: list) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_formats(tmp_path: Path):
    core = load_task_file(write(tmp_path / "core.jsonl", [ROWS["core"]]))
    assert core.kind == "choice" and core.name == "core"
    assert core.items[0] == ChoiceItem("The capital of France is ", ("Paris", "Rome"), 0)
    arc = load_task_file(write(tmp_path / "arc.jsonl", [ROWS["arc"]])).items[0]
    assert arc.choices == ("A", "B", "C") and arc.gold == 1
    assert arc.prompt[0]["content"] == render_mc(
        "Which is a gas?", ("A", "B", "C"), ["ice", "steam", "rock"]
    )
    assert "- steam=B\n" in arc.prompt[0]["content"]
    mmlu = load_task_file(write(tmp_path / "mmlu.jsonl", [ROWS["mmlu"]])).items[0]
    assert mmlu.choices == ("A", "B", "C", "D") and mmlu.gold == 1
    gsm = load_task_file(write(tmp_path / "gsm.jsonl", [ROWS["gsm8k"]]))
    assert gsm.kind == "generative" and gsm.items[0] == GenerativeItem(
        [{"role": "user", "content": "What is 2+3?"}], "5"
    )
    assert extract_answer("so #### 1,234 done") == "1234" and extract_answer("none") is None


@pytest.mark.parametrize(
    "line, words",
    [
        ('{"question": "q", "answer": "no marker"}', "####"),
        ('{"question": "q", "choices": ["a", "b"], "answer": 7}', "index"),
        ('{"foo": 1}', "unknown format"),
        ("{oops", "malformed JSON"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path: Path, line, words):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(ROWS["mmlu"]) + "\n" + line + "\n")
    with pytest.raises(UserError) as err:
        load_task_file(path)
    assert f"{path}, line 2" in str(err.value) and words in str(err.value)


def test_mixed_kinds_refused(tmp_path: Path):
    path = write(tmp_path / "m.jsonl", [ROWS["mmlu"], ROWS["gsm8k"]])
    with pytest.raises(UserError, match="line 2: a generative item"):
        load_task_file(path)


def test_unknown_task_name():
    with pytest.raises(UserError, match="unknown task"):
        load_task("nope")


def test_embedded_task_is_deterministic_and_held_out_of_sft():
    from nanochat_tui.align.embedded import held_out, stdlib_conversations

    test = load_task("stdlib-modules")
    assert test.items == load_task("stdlib-modules").items and len(test.items) >= 20
    train = load_task("stdlib-modules", "train")
    assert train.name == "stdlib-modules-train" and len(train.items) > 10 * len(test.items)
    trained_on = {
        c["messages"][0]["content"]
        for c in stdlib_conversations()
        if not held_out(c["messages"][0]["content"], SFT_VAL_FRACTION)
    }
    trained_text = " ".join(trained_on)
    for item in test.items:
        assert len(item.choices) == 4 and len(set(item.choices)) == 4
        right = item.choices[item.gold].strip("`")
        assert f"`{right}`" not in trained_text  # the SFT set never asks about a test name


# ------------------------------------------------------------------ scoring


@pytest.fixture(scope="module")
def lm():
    """A fixed random tiny GPT and a small real BPE tokenizer."""
    import jax
    from flax import nnx

    from nanochat_tui.align.embedded import stdlib_conversations
    from nanochat_tui.config.schema import ModelConfig
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.tokenizer import Tokenizer

    texts = [c["messages"][1]["content"] for c in stdlib_conversations()[:300]]
    tok = Tokenizer.train(texts + ["#### 0123456789 + - * ="] * 5, 400)
    cfg = ModelConfig(depth=1, aspect_ratio=64, head_dim=32, sequence_len=64, vocab_size=400)
    model = GPT(cfg, rngs=nnx.Rngs(0))
    leaves, treedef = jax.tree.flatten(nnx.state(model, nnx.Param))
    keys = jax.random.split(jax.random.key(1), len(leaves))
    nnx.update(
        model,
        jax.tree.unflatten(
            treedef,
            [jax.random.normal(k, x.shape) * 0.3 for k, x in zip(keys, leaves, strict=True)],
        ),
    )
    return model, tok


def reference_scores(model, tok, item: ChoiceItem) -> list[float]:
    """Independent: each choice alone, unpadded, full logits, NumPy log-softmax."""
    import jax
    import jax.numpy as jnp

    from nanochat_tui.align.chat import render_for_completion

    if isinstance(item.prompt, str):
        prompt = [tok.bos_id, *tok.encode(item.prompt)]
        seqs = [[tok.bos_id, *tok.encode(item.prompt + c)] for c in item.choices]
    else:
        prompt = render_for_completion(tok, {"messages": item.prompt})
        seqs = [[*prompt, *tok.encode(c)] for c in item.choices]
    forward = jax.jit(
        lambda ids: model(ids)
    )  # one [1, 64] shape: causal, so padding after is inert
    out = []
    for s in seqs:
        start = next(i for i in range(len(s)) if any(len(o) <= i or o[i] != s[i] for o in seqs))
        start, s = max(1, start - max(0, len(s) - 64)), s[-64:]  # the model's context
        padded = np.zeros((1, 64), np.int32)
        padded[0, : len(s) - 1] = s[:-1]
        logits = np.asarray(forward(jnp.asarray(padded))[0, : len(s) - 1], np.float64)
        m = logits.max(-1, keepdims=True)
        logp = logits - (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))
        out.append(float(np.mean([-logp[t - 1, s[t]] for t in range(start, len(s))])))
    return out


def test_choice_scores_match_numpy_reference(lm, tmp_path: Path):
    from nanochat_tui.jax_engine.task_eval import evaluate_task, score_choices

    model, tok = lm
    task = load_task_file(write(tmp_path / "mix.jsonl", [ROWS["core"], ROWS["mmlu"], ROWS["arc"]]))
    task.items += load_task("stdlib-modules").items[:1]
    picks = []
    for item in task.items:
        got = score_choices(model, tok, item, 64)
        want = reference_scores(model, tok, item)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        picks.append(int(np.argmin(want)))
    result = evaluate_task(model, tok, task, seq_len=64)
    assert [r["pick"] for r in result["items"]] == picks
    golds = [item.gold for item in task.items]
    assert result["correct"] == sum(p == g for p, g in zip(picks, golds, strict=True))
    assert result["accuracy"] == pytest.approx(result["correct"] / len(task.items))


def test_generative_exact_match(lm, tmp_path: Path):
    from nanochat_tui.align.chat import render_for_completion
    from nanochat_tui.align.tool_exec import ToolRunner
    from nanochat_tui.jax_engine.inference import TokenToolHook
    from nanochat_tui.jax_engine.sample import generate_uncached
    from nanochat_tui.jax_engine.task_eval import evaluate_task

    model, tok = lm
    task = load_task_file(write(tmp_path / "gsm.jsonl", [ROWS["gsm8k"]]))
    result = evaluate_task(model, tok, task, seq_len=64, max_new_tokens=20)
    prompt = render_for_completion(tok, {"messages": task.items[0].messages})
    stops = (tok.special("assistant_end"), tok.bos_id)
    reply = tok.decode(
        generate_uncached(
            model,
            prompt,
            max_new_tokens=20,
            temperature=0.0,
            stop_ids=stops,
            tools=TokenToolHook(tok, ToolRunner()),
        )
    )
    assert result["items"][0]["answer"] == extract_answer(reply)
    assert result["items"][0]["correct"] == (extract_answer(reply) == "5")
    assert result["kind"] == "generative" and result["n"] == 1


def test_results_saved_and_read_back(tmp_path: Path):
    from nanochat_tui.jax_engine.task_eval import save_result

    result = {"task": "t", "kind": "choice", "n": 2, "correct": 1, "accuracy": 0.5, "items": []}
    path = save_result(tmp_path, result, step=30, stage="sft")
    save_result(tmp_path, {**result, "accuracy": 1.0}, step=10, stage="sft")
    assert path == tmp_path / "evals" / "t" / "step_30.json"
    assert not list(tmp_path.glob("evals/t/*.tmp"))
    (tmp_path / "evals" / "t" / "step_99.json").write_text("{half")
    # hand-edited files: no number to show, a step that is not one, no step (the name says 40)
    (tmp_path / "evals" / "t" / "step_97.json").write_text('{"task": "t", "accuracy": "high"}')
    (tmp_path / "evals" / "t" / "step_98.json").write_text('{"accuracy": 0.1, "step": "x"}')
    (tmp_path / "evals" / "t" / "step_40.json").write_text('{"task": "t", "accuracy": 0.25}')
    got = read_results(tmp_path)
    assert [(r["step"], r["accuracy"], r.get("stage")) for r in got] == [
        (10, 1.0, "sft"),
        (30, 0.5, "sft"),
        (40, 0.25, None),
    ]
