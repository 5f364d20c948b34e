"""The Generate and Review screens driven by Pilot against a scripted endpoint: a bad field gets
one message, Stop keeps the rows written; accept / reject / edit / accept-all change what
training will read. (The Generate screen against our own ``serve`` is in test_synth.py, sharing
its trained checkpoint and compiled server.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import pilot_wait_for
from nanochat_tui.align import synth_store as store
from nanochat_tui.align.endpoint import Endpoint
from nanochat_tui.align.synth import SynthSettings, generate
from nanochat_tui.tui.app import NanochatApp
from nanochat_tui.tui.screens.generate import GenerateScreen
from nanochat_tui.tui.screens.review import ReviewScreen
from synth_servers import Scripted, ThreadServer, make_project, write_prompts

pytestmark = pytest.mark.anyio


@pytest.fixture
def generated(_isolated_home, tmp_path) -> store.SetPaths:
    make_project(_isolated_home)
    with ThreadServer(Scripted().app) as server:
        progress = generate(
            SynthSettings(project="demo", prompts=write_prompts(tmp_path / "p.jsonl", 4)),
            Endpoint(server.base_url, "m"),
        )
    assert progress.done == 4
    return store.SetPaths("demo", "synth")


def prefs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def open_from_palette(pilot, words: str) -> None:
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*words)
    await pilot.pause(0.3)
    await pilot.press("enter")
    await pilot.pause()


async def test_review_screen_accept_reject_edit(generated, screen_text):
    rows = store.review_rows(generated)
    app = NanochatApp()
    async with app.run_test(size=(140, 44)) as pilot:
        await open_from_palette(pilot, "review")
        screen = app.screen
        assert isinstance(screen, ReviewScreen)
        text = screen_text(app)
        assert "4 pending" in text and rows[0].critique[:20] in text
        assert "rejected: first answer" in text and "chosen: revision" in text

        await pilot.press("a")  # accept row 0, the cursor moves on
        await pilot.press("r")  # reject row 1
        await pilot.press("e")  # edit row 2
        await pilot.pause()
        assert screen.editing
        await pilot.press("f7", "delete", *"Better", "full_stop")  # typing r edits, not decides
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not screen.editing
        got = {r.id: r.review for r in store.review_rows(generated)}
        assert [got[r.id] for r in rows] == ["accepted", "rejected", "edited", "pending"]
        exported = prefs(generated.pref)
        assert [p["id"] for p in exported] == [rows[0].id, rows[2].id]
        assert exported[1]["chosen"] == "Better." and exported[1]["review"] == "edited"
        assert exported[1]["rejected"] == rows[2].answer

        await pilot.press("A")  # accept every pending row
        await pilot.pause()
        assert [p["id"] for p in prefs(generated.pref)] == [rows[0].id, rows[2].id, rows[3].id]
        assert "1 rejected" in screen_text(app) and "0 pending" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ReviewScreen)


async def test_generate_screen_bad_field_and_stop(_isolated_home, tmp_path, screen_text, type_into):
    make_project(_isolated_home)
    make_project(_isolated_home, "zeta")
    prompts = write_prompts(tmp_path / "p.jsonl", 40)
    with ThreadServer(Scripted().app) as server:
        app = NanochatApp(prefab="tiny", overrides=["align.project=zeta"])
        async with app.run_test(size=(120, 40)) as pilot:
            await open_from_palette(pilot, "generate")
            screen = app.screen
            assert isinstance(screen, GenerateScreen)
            assert screen.query_one("#gen-project").value == "zeta"  # the config's project
            await type_into(pilot, "#gen-project", "demo")
            await pilot.click("#gen-start")
            assert "not started: name the model" in screen_text(app)
            await type_into(pilot, "#gen-model", "m")
            await type_into(pilot, "#gen-endpoint", server.base_url)
            await type_into(pilot, "#gen-prompts", str(prompts))
            await type_into(pilot, "#gen-rpm", "600")  # 0.1 s apart: 40 rows take 12 s
            await type_into(pilot, "#gen-price", "2")
            await pilot.click("#gen-start")
            paths = store.SetPaths("demo", "synth")
            await pilot_wait_for(
                pilot, lambda: len(store.read_log(paths.trace)) >= 2, 60, "two rows"
            )
            await pilot.pause(0.5)
            text = screen_text(app)
            found = re.search(r"(\d+) requests · (\d+) tokens · cost \$([\d.]+) · ETA 0:00:", text)
            assert found, text
            requests, tokens, cost = int(found[1]), int(found[2]), float(found[3])
            # the scripted server reports 15 tokens a reply; up to 4 requests may be in flight
            assert 15 * (requests - 4) <= tokens <= 15 * requests
            assert cost == pytest.approx(tokens / 1000 * 2, abs=1e-4)
            await pilot.click("#gen-stop")
            await pilot_wait_for(pilot, lambda: not screen.running, 30, "the stop")
            await pilot_wait_for(  # the end status repaints after running turns False
                pilot, lambda: "pending review" in screen_text(app), 30, "the end status"
            )
            text = screen_text(app)
            assert "stopped: stopped by the user" in text, text
            written = store.read_log(paths.trace)
            assert 2 <= len(written) < 40
            assert f"{len(written)}/40 rows" in text
            assert "pending review" in text


async def test_generate_screen_temperature_is_checked_and_sent(
    _isolated_home, tmp_path, screen_text, type_into
):
    make_project(_isolated_home)
    prompts = write_prompts(tmp_path / "p.jsonl", 2)
    scripted = Scripted()
    with ThreadServer(scripted.app) as server:
        app = NanochatApp(prefab="tiny")
        async with app.run_test(size=(120, 40)) as pilot:
            await open_from_palette(pilot, "generate")
            screen = app.screen
            assert isinstance(screen, GenerateScreen)
            typed = {
                "#gen-project": "demo",
                "#gen-model": "m",
                "#gen-endpoint": server.base_url,
                "#gen-prompts": str(prompts),
                "#gen-temperature": "3",
            }
            for selector, text in typed.items():
                await type_into(pilot, selector, text)
            await pilot.click("#gen-start")
            await pilot.pause()
            text = screen_text(app)
            assert "not started: temperature must be between 0 and 2, not 3" in text, text
            assert not screen.running and not scripted.calls
            for selector, value in typed.items():  # everything typed is still there
                assert screen.query_one(selector).value == value, selector
            await type_into(pilot, "#gen-temperature", "0.25")
            await pilot.click("#gen-start")
            await pilot_wait_for(pilot, lambda: not screen.running, 60, "the generation")
    bodies = [body for _, body, _ in scripted.calls]
    assert len(bodies) == 6 and {body["temperature"] for body in bodies} == {0.25}
