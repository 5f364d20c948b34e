"""Chat pane with a tiny trained checkpoint: load with keys, chat, stats, transcripts, presets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList, Static, TextArea

from helpers import pilot_wait_for, tiny_overrides
from nanochat_tui import paths
from nanochat_tui.errors import UserError
from nanochat_tui.eval_presets import load_presets
from nanochat_tui.transcripts import list_transcripts, read_transcript
from nanochat_tui.tui.app import NanochatApp
from nanochat_tui.tui.screens.chat import ChatPane, MessageView, PresetsScreen, TranscriptPicker


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def run_dir(trained_run: Path) -> Path:
    """A copy of the trained run under this test's runs dir, where the Checkpoints pane finds it."""
    dest = paths.runs_dir() / "trained"
    shutil.copytree(trained_run, dest)
    return dest


async def load_with_keys(pilot, app) -> None:
    await pilot.press("2")
    await pilot.pause()
    await pilot.press("enter")
    await pilot.pause()
    assert app.state.checkpoint is not None
    await pilot.press("3")
    await pilot.pause()


async def wait_reply(pilot, pane: ChatPane, timeout: float = 60.0) -> None:
    import asyncio

    for _ in range(int(timeout / 0.1)):
        await pilot.pause()
        if not pane.generating:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("no reply in time")


@pytest.mark.anyio
async def test_no_checkpoint_says_how_to_load():
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("3")
        await pilot.pause()
        text = str(app.query_one("#chat-empty", Static).render())
        assert "then 2 to open Checkpoints" in text
        # the prompt box has the focus anyway: typing lands there, not on the pane keys
        assert app.focused is app.query_one("#chat-input", Input)


@pytest.mark.anyio
async def test_chat_reply_stats_and_transcript(run_dir):
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await load_with_keys(pilot, app)
        pane = app.query_one(ChatPane)
        assert app.focused is app.query_one("#chat-input", Input)
        # sampling settings are editable; a bad value is refused with a message
        app.query_one("#max-tokens", Input).value = "12"
        await pilot.press(*"Hello there", "enter")
        await wait_reply(pilot, pane)
        views = list(pane.query(MessageView))
        assert [v.role for v in views] == ["user", "assistant"]
        stats = views[-1].stats
        assert stats and stats["completion_tokens"] >= 1 and stats["ttft_s"] is not None
        assert "tok/s" in str(views[-1].render()) or "ttft" in str(views[-1].render())
        # the first message showed a loading phase instead of a frozen pane
        assert views[-1].phases[0].startswith("loading checkpoint step")
        # loading the model initialised JAX: the status bar now names the device
        assert "device: cpu" in str(app.status_bar.render())
        # a second turn carries history (the model is loaded: no loading phase)
        await pilot.press(*"and?", "enter")
        await wait_reply(pilot, pane)
        assert not any(p.startswith("loading") for p in list(pane.query(MessageView))[-1].phases)
        assert [v.role for v in pane.query(MessageView)] == [
            "user",
            "assistant",
            "user",
            "assistant",
        ]
        # transcript on disk: one line per message
        [info] = list_transcripts(run_dir)
        records = read_transcript(info.path)
        assert [r["role"] for r in records] == ["user", "assistant", "user", "assistant"]
        assert records[0]["content"] == "Hello there" and "stats" in records[1]
        # prompt-continuation mode
        await pilot.press("ctrl+t")
        assert pane.mode == "complete"
        await pilot.press(*"The os module", "enter")
        await wait_reply(pilot, pane)
        assert [v.role for v in pane.query(MessageView)] == ["prompt", "completion"]
        # browse: the first transcript opens read-only
        await pilot.press("ctrl+l")
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, TranscriptPicker) and len(picker.items) == 2
        # newest first: the completion session; pick the older chat one
        await pilot.press("down", "enter")
        await pilot.pause()
        assert pane.viewing == info.path
        assert [v.role for v in pane.query(MessageView)] == [
            "user",
            "assistant",
            "user",
            "assistant",
        ]
        assert app.query_one("#chat-input", Input).disabled
        await pilot.press("escape")
        await pilot.pause()
        assert pane.viewing is None
        # new chat asks first when non-empty
        await pilot.press("ctrl+n")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert pane.messages == [] and not list(pane.query(MessageView))


@pytest.mark.anyio
async def test_bad_setting_is_refused(run_dir):
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await load_with_keys(pilot, app)
        pane = app.query_one(ChatPane)
        app.query_one("#temperature", Input).value = "hot"
        await pilot.pause()
        await pilot.press(*"hi", "enter")
        await pilot.pause()
        assert not pane.generating and pane.messages == []
        assert app.query_one("#temperature", Input).has_class("-invalid")


@pytest.mark.anyio
async def test_every_bad_sampling_field_named_and_typed_message_kept(run_dir):
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await load_with_keys(pilot, app)
        pane = app.query_one(ChatPane)
        app.query_one("#temperature", Input).value = "-1"
        app.query_one("#top-k", Input).value = "many"
        await pilot.pause()
        with pytest.raises(UserError) as caught:
            pane.sampling()
        message = str(caught.value)
        assert "temperature: -1 is out of range" in message
        assert "top-k: 'many' is not a whole number" in message
        box = app.query_one("#chat-input", Input)
        box.focus()
        await pilot.press(*"keep me", "enter")
        await pilot.pause()
        assert box.value == "keep me" and pane.messages == []
        assert app.query_one("#top-k", Input).has_class("-invalid")


@pytest.mark.anyio
async def test_tab_never_leaves_text_fields_so_q_and_digits_type(run_dir):
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await load_with_keys(pilot, app)
        box = app.query_one("#chat-input", Input)
        box.focus()
        for _ in range(4):
            await pilot.press("tab")
            await pilot.pause()
            assert isinstance(app.focused, Input)
        assert app.focused is box
        await pilot.press("q", "5")
        await pilot.pause()
        assert app.is_running and app.active_pane == "chat"
        assert box.value == "q5"


@pytest.mark.anyio
async def test_quit_while_a_reply_is_written_asks_first(run_dir):
    """ctrl+q (q types into the prompt) while the reply is on its way (the first one loads the
    model: seconds): a question, not an exit; n stays, y quits."""
    from nanochat_tui.tui.screens.confirm import ConfirmScreen

    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await load_with_keys(pilot, app)
        pane = app.query_one(ChatPane)
        await pilot.press(*"Hello", "enter", "ctrl+q")
        await pilot.pause()
        if not isinstance(app.screen, ConfirmScreen) and not pane.generating:
            pytest.skip("the reply was written before ctrl+q arrived (idle machine, warm cache)")
        assert isinstance(app.screen, ConfirmScreen) and "writing a reply" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running and not isinstance(app.screen, ConfirmScreen)
        # n kept the reply going: it ends as an answer (on an idle machine it may be done already)
        await wait_reply(pilot, pane)
        assert [m["role"] for m in pane.messages] == ["user", "assistant"], pane.messages
        await pilot.press(*"More", "enter", "ctrl+q")
        await pilot.pause()
        if isinstance(app.screen, ConfirmScreen):  # still writing the second reply
            await pilot.press("y")
            await pilot.pause()
    assert app.return_code == 0


@pytest.mark.anyio
async def test_ctrl_u_in_presets_clears_the_field_and_does_not_use(run_dir):
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await load_with_keys(pilot, app)
        pane = app.query_one(ChatPane)
        await pilot.press("ctrl+o")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PresetsScreen)
        name = screen.query_one("#preset-name", Input)
        name.focus()
        await pilot.press("end", "ctrl+u")
        await pilot.pause()
        assert app.screen is screen and name.value == ""
        assert pane.mode == "chat" and not pane.generating


@pytest.mark.anyio
async def test_preset_edited_persists_across_restart(run_dir):
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await load_with_keys(pilot, app)
        await pilot.press("ctrl+o")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PresetsScreen)
        assert screen.query_one(OptionList).option_count == len(load_presets())
        area = screen.query_one("#preset-prompt", TextArea)
        area.focus()
        area.text = ""
        await pilot.press(*"Edited prompt: the json module")
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("escape")  # close presets
        await pilot.pause()
        await pilot.press("escape", "q")  # leave the prompt box, quit (saves UI state)
        await pilot.pause()
    assert load_presets()[0].prompt == "Edited prompt: the json module"

    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await pilot.pause()
        await pilot.press("ctrl+o")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PresetsScreen)
        assert screen.query_one("#preset-prompt", TextArea).text == "Edited prompt: the json module"
        # using it sends it (complete mode) to the checkpoint restored from state.json
        await pilot.press("ctrl+r")
        await pilot.pause()
        pane = app.query_one(ChatPane)
        await wait_reply(pilot, pane)
        assert pane.mode == "complete"
        assert [v.role for v in pane.query(MessageView)] == ["prompt", "completion"]


# ------------------------------------------------------------------ tool use

CALC = {
    "messages": [
        {"role": "user", "content": "What is 6*7?"},
        {"role": "assistant", "content": [{"type": "python", "text": "6*7"}]},
        {"role": "tool", "content": "42"},
        {"role": "assistant", "content": "It is 42."},
    ]
}
ECHO = {
    "messages": [
        {"role": "user", "content": "Echo 21"},
        {"role": "assistant", "content": [{"type": "python", "text": 'echo {"x": 21}'}]},
        {"role": "tool", "content": "42"},
        {"role": "assistant", "content": "Done."},
    ]
}


@pytest.fixture(scope="session")
def tool_run(trained_run: Path, tmp_path_factory) -> Path:
    """The tiny base fine-tuned briefly (real SFT) on two tool-calling conversations, so greedy
    decoding makes the calls deterministically: the calculator, and a user tool ``echo``."""
    import json

    from nanochat_tui.config import load_config
    from nanochat_tui.jax_engine.train import train

    home = tmp_path_factory.mktemp("tool-home")
    data = home / "calls.jsonl"
    data.write_text("\n".join(json.dumps(c) for c in [CALC, ECHO] * 4) + "\n")
    overrides = tiny_overrides(
        {
            "train.num_iterations": 60,
            "train.stage": "sft",
            "data.source": str(data),
            "data.val_fraction": 0.2,
            "run.init_from": str(trained_run),
            "run.name": "tools",
            "optim.warmdown_ratio": 0.0,
        }
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(home))
        result = train(load_config("sft-only", overrides), home / "tools", lambda e: None)
    assert result.status == "finished", result
    return home / "tools"


async def _ask(pilot, app, pane: ChatPane, text: str) -> MessageView:
    box = app.query_one("#chat-input", Input)
    box.value = text
    box.focus()
    await pilot.press("enter")
    await wait_reply(pilot, pane)
    return list(pane.query(MessageView))[-1]


@pytest.mark.anyio
async def test_chat_calls_the_calculator_and_a_confirmed_user_tool(tool_run, screen_text):
    import json
    import sys

    from nanochat_tui.tui.screens.confirm import ConfirmScreen

    run_dir = paths.runs_dir() / "tools"
    shutil.copytree(tool_run, run_dir)
    (run_dir / "interface.json").write_text(
        json.dumps(
            {
                "tools": [
                    {
                        "name": "echo",
                        "description": "doubles x",
                        "parameters": {"type": "object"},
                        "command": [
                            sys.executable,
                            "-c",
                            "import json,sys; print(json.load(sys.stdin)['x'] * 2)",
                        ],
                    }
                ]
            }
        )
    )
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await load_with_keys(pilot, app)
        pane = app.query_one(ChatPane)
        app.query_one("#temperature", Input).value = "0"
        app.query_one("#max-tokens", Input).value = "40"
        # the calculator runs without asking; call and output are shown apart from the text
        reply = await _ask(pilot, app, pane, "What is 6*7?")
        assert ["python", "6*7"] in reply.parts and ["output", "42"] in reply.parts
        assert "⚙ python 6*7" in screen_text(app) and "→ 42" in screen_text(app)
        [info] = list_transcripts(run_dir)
        assert read_transcript(info.path)[-1]["parts"] == reply.parts
        # a user tool waits for the confirm dialog: refused, it does not run
        await pilot.press("ctrl+n")
        await pilot.pause()
        await pilot.press("y")
        box = app.query_one("#chat-input", Input)
        box.value = "Echo 21"
        box.focus()
        await pilot.press("enter")
        await pilot_wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 60, "dialog")
        assert "stdin" in screen_text(app) and '"x": 21' in screen_text(app)
        await pilot.press("n")
        await wait_reply(pilot, pane)
        reply = list(pane.query(MessageView))[-1]
        assert any(k == "output" and "declined" in t for k, t in reply.parts)
        # confirmed, it runs with its arguments on stdin
        await pilot.press("ctrl+n")
        await pilot.pause()
        await pilot.press("y")
        box.value = "Echo 21"
        box.focus()
        await pilot.press("enter")
        await pilot_wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 60, "dialog")
        await pilot.press("y")
        await wait_reply(pilot, pane)
        reply = list(pane.query(MessageView))[-1]
        assert ["output", "42"] in reply.parts


def test_cli_chat_runs_tools(tool_run, tmp_path, capsys):
    import json
    import sys

    from nanochat_tui.cli import main

    greedy = ["--temperature", "0", "--max-tokens", "40"]
    assert main(["chat", str(tool_run), "--prompt", "What is 6*7?", *greedy]) == 0
    assert "[python 6*7][output 42]" in capsys.readouterr().out
    interface = tmp_path / "interface.json"
    doubler = [sys.executable, "-c", "import json,sys; print(json.load(sys.stdin)['x'] * 2)"]
    interface.write_text(json.dumps({"tools": [{"name": "echo", "command": doubler}]}))
    ask = ["chat", str(tool_run), "--prompt", "Echo 21", "--interface", str(interface), *greedy]
    assert main(ask) == 0  # no terminal to ask on and no --allow-tools: refused
    captured = capsys.readouterr()
    assert "declined" in captured.out and "pass --allow-tools" in captured.err
    assert main([*ask, "--allow-tools"]) == 0
    assert "[output 42]" in capsys.readouterr().out
