"""Tool execution during chat: the calculator runs unasked and refuses escapes; user tools run
only after confirmation, get their arguments as JSON on stdin, and are bounded in time and output;
the sampler forces the output back into the context (cached and uncached decoding agree)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from nanochat_tui.align.tool_exec import (
    ToolRunner,
    UserTool,
    load_interface,
    parse_call,
    run_command,
)
from nanochat_tui.errors import UserError

ECHO = UserTool(
    "echo",
    (sys.executable, "-c", "import json,sys; a=json.load(sys.stdin); print(a['x'] * 2)"),
)


def test_calculator_runs_without_confirmation():
    asked = []
    runner = ToolRunner({}, confirm=lambda call: asked.append(call) or False)
    outcome = runner("417 * 23")
    assert outcome.ok and outcome.output == str(417 * 23)
    assert asked == [] and runner.log == [outcome]


@pytest.mark.parametrize(
    "expr, words",
    [
        ("__import__('os').system('true')", "not allowed"),
        ("(1).__class__", "attribute"),
        ("open('/etc/passwd')", "not allowed"),
        ("9 ** 9 ** 9", "too large"),
        ("[x for x in range(10)]", "not allowed"),
    ],
)
def test_calculator_refuses_escapes_with_a_message(expr, words):
    outcome = ToolRunner()(expr)
    assert not outcome.ok
    assert outcome.output.startswith("error:") and words in outcome.output


def test_user_tool_runs_only_after_confirmation(tmp_path: Path):
    marker = tmp_path / "ran"
    tool = UserTool(
        "touch", (sys.executable, "-c", f"open({str(marker)!r}, 'w').write('x'); print('done')")
    )
    declined = ToolRunner({"touch": tool}, confirm=lambda call: False)
    out = declined('touch {"a": 1}')
    assert not out.ok and "declined" in out.output and not marker.exists()
    no_confirm = ToolRunner({"touch": tool})  # no way to ask: refused
    assert "declined" in no_confirm('touch {"a": 1}').output and not marker.exists()
    seen = []
    accepted = ToolRunner({"touch": tool}, confirm=lambda call: seen.append(call) or True)
    out = accepted('touch {"a": 1}')
    assert out.ok and out.output == "done" and marker.exists()
    assert seen[0].args == {"a": 1} and seen[0].command == tool.command
    assert "stdin" in seen[0].describe() and '"a": 1' in seen[0].describe()


def test_user_tool_gets_json_args_on_stdin_not_a_shell():
    runner = ToolRunner({"echo": ECHO}, confirm=lambda call: True)
    assert runner('echo {"x": 21}').output == "42"
    # shell syntax is just bytes in an argv, never interpreted
    ok, text = run_command(("echo", "$(id)", ";", "ls"), {})
    assert ok and text == "$(id) ; ls"


def test_user_tool_timeout_and_output_bound():
    slow = (sys.executable, "-c", "import time; time.sleep(30)")
    start = time.monotonic()
    ok, text = run_command(slow, {}, timeout=0.5)
    assert not ok and "longer than 0.5s" in text and time.monotonic() - start < 10
    chatty = (sys.executable, "-c", "print('y' * 100000)")
    ok, text = run_command(chatty, {}, max_chars=100)
    assert ok and len(text) < 120 and text.endswith("(cut)")
    ok, text = run_command((sys.executable, "-c", "import sys; sys.exit(3)"), {})
    assert not ok and "exit status 3" in text
    ok, text = run_command(("/no/such/program",), {})
    assert not ok and "cannot start" in text


def test_parse_call_kinds():
    tools = {"echo": ECHO}
    assert parse_call("1 + 2", tools).tool == "python"
    assert parse_call('other {"x": 1}', tools).tool == "python"  # not declared: calculator
    call = parse_call('echo {"x": 1}', tools)
    assert call.tool == "echo" and call.args == {"x": 1}
    bad = ToolRunner(tools, confirm=lambda c: True)("echo {nope}")
    assert not bad.ok and "JSON object" in bad.output


def test_load_interface(tmp_path: Path):
    path = tmp_path / "interface.json"
    path.write_text(
        json.dumps(
            {
                "tools": [
                    {"name": "lookup", "description": "d", "parameters": {"type": "object"}},
                    {"name": "echo", "command": ["echo", "hi"]},
                ]
            }
        )
    )
    tools = load_interface(path)
    assert list(tools) == ["echo"] and tools["echo"].command == ("echo", "hi")
    path.write_text(json.dumps({"tools": [{"name": "x", "command": "rm -rf /"}]}))
    with pytest.raises(UserError) as err:
        load_interface(path)
    assert "tools[0].command" in str(err.value) and str(path) in str(err.value)
    path.write_text("{nope")
    with pytest.raises(UserError, match="not valid JSON"):
        load_interface(path)


# ------------------------------------------------------------------ the sampler hook


@pytest.fixture(scope="module")
def chat_model():
    """A random tiny GPT with a real BPE tokenizer (specials included), as a ChatModel."""
    from flax import nnx

    from nanochat_tui.align.embedded import stdlib_conversations
    from nanochat_tui.config.loader import validate
    from nanochat_tui.jax_engine.inference import ChatModel
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.tokenizer import Tokenizer

    texts = [c["messages"][1]["content"] for c in stdlib_conversations()[:300]]
    tok = Tokenizer.train(texts + ["0123456789 + - * / = ( )"] * 5, 400)
    config = validate(
        {
            "model": {
                "depth": 1,
                "aspect_ratio": 64,
                "head_dim": 32,
                "sequence_len": 128,
                "vocab_size": 400,
            },
            "train": {"device_batch_size": 1, "total_batch_size": 128},
        }
    )
    model = GPT(config.model, rngs=nnx.Rngs(0))
    return ChatModel(model, tok, config, {"step": 0}, Path("."))


def merged(pieces):
    """Adjacent pieces of one kind joined: [(kind, text), ...]."""
    out: list[tuple[str, str]] = []
    for kind, text in pieces:
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))
    return out


def test_prefilled_call_forces_the_output_and_generation_continues(chat_model):
    runner = ToolRunner()
    msgs = [{"role": "user", "content": "What is 6*7?"}]
    pieces = merged(
        chat_model.chat_turn(
            msgs,
            tools=runner,
            max_tokens=24,
            temperature=0.0,
            prefill="<|python_start|>6*7<|python_end|>",
        )
    )
    assert pieces[0] == ("python", "6*7")
    assert pieces[1] == ("output", "42")
    assert [o.output for o in runner.log] == ["42"]
    assert chat_model.last_stats["tool_calls"] == 1
    # the forced ids are in the context the model continues from: the same as a prompt that
    # already holds the call and its output (greedy)
    tok = chat_model.tokenizer
    after = [p for p in pieces[2:] if p[0] == "text"]
    from nanochat_tui.align.chat import render_for_completion

    ids = render_for_completion(tok, {"messages": msgs})
    forced = tok.encode("<|python_start|>6*7<|python_end|><|output_start|>42<|output_end|>")
    n_forced = len(tok.encode("<|output_start|>42<|output_end|>"))
    expect = list(
        chat_model._stream(
            [*ids, *forced],
            chat_model._turn_stops(),
            max_tokens=24 - n_forced,
            temperature=0.0,
            top_k=None,
            seed=0,
        )
    )
    assert "".join(p for _k, p in after) == "".join(p for _k, p in expect if _k == "text")


def test_cached_and_uncached_agree_with_tools(chat_model):
    from nanochat_tui.jax_engine.inference import TokenToolHook
    from nanochat_tui.jax_engine.sample import generate, generate_uncached

    tok = chat_model.tokenizer
    call = tok.encode("<|python_start|>2+3<|python_end|>")
    prompt = [tok.bos_id, tok.special("assistant_start"), *call]
    kw = dict(max_new_tokens=12, temperature=1.0, top_k=20, seed=5, assistant_prefix=len(call))
    a = list(generate(chat_model.model, prompt, tools=TokenToolHook(tok, ToolRunner()), **kw))
    b = list(
        generate_uncached(chat_model.model, prompt, tools=TokenToolHook(tok, ToolRunner()), **kw)
    )
    assert a == b
    assert a[:3] == tok.encode("<|output_start|>5<|output_end|>")
