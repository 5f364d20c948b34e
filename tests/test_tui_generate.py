"""The Generate and Review screens, driven by Pilot: generation against our own ``serve`` (a tiny
checkpoint on 127.0.0.1, real HTTP) from the palette, an auth failure shown with its policy, and
accept / reject / edit / accept-all on the Review screen changing what training will read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import pilot_wait_for
from nanochat_tui.align import synth_store as store
from nanochat_tui.align.endpoint import Endpoint
from nanochat_tui.align.synth import SynthSettings, generate
from nanochat_tui.serve.server import BackgroundServer, load_state
from nanochat_tui.tui.app import NanochatApp
from nanochat_tui.tui.screens.generate import GenerateScreen
from nanochat_tui.tui.screens.review import ReviewScreen
from synth_servers import Scripted, ThreadServer, make_project, train_tiny, write_prompts

pytestmark = pytest.mark.anyio
KEY = "sk-tui-generate-secret-42"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    run_dir = train_tiny(tmp_path_factory.mktemp("gen-serve"), name="gensrv")
    with BackgroundServer(load_state(run_dir, slots=1, api_key=KEY)) as srv:
        yield srv


async def open_from_palette(pilot, words: str) -> None:
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*words)
    await pilot.pause(0.3)
    await pilot.press("enter")
    await pilot.pause()


async def test_generate_screen_runs_against_serve(
    served, tmp_path, _isolated_home, screen_text, type_into, memory_keyring
):
    make_project(_isolated_home)
    prompts = write_prompts(tmp_path / "p.jsonl", 2)
    app = NanochatApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_from_palette(pilot, "generate")
        screen = app.screen
        assert isinstance(screen, GenerateScreen)
        assert screen.query_one("#gen-project").value == "demo"
        await type_into(pilot, "#gen-prompts", str(prompts))
        await type_into(pilot, "#gen-endpoint", served.base_url)
        await type_into(pilot, "#gen-model", "gensrv")
        await type_into(pilot, "#gen-max-tokens", "6")
        await type_into(pilot, "#gen-key-name", "local")
        await type_into(pilot, "#gen-key", "sk-wrong-typed-key-7")
        await pilot.click("#gen-start")
        await pilot_wait_for(pilot, lambda: not screen.running, 120, "the auth failure")
        text = screen_text(app)
        assert "auth: HTTP 401" in text and "run stopped" in text
        assert screen.query_one("#gen-key").value == ""  # stored, then cleared
        assert "sk-wrong-typed-key-7" not in text

        from nanochat_tui import secrets

        secrets.set_secret("local", KEY)  # the right key, as `synth --key-name local` stores it
        await pilot.click("#gen-start")
        await pilot_wait_for(pilot, lambda: not screen.running, 240, "the generation")
        text = screen_text(app)
        assert "finished" in text and "2/2 rows" in text and "cost $0.0000" in text, text
        assert "2 rows pending review" in text
        assert len(store.review_rows(store.SetPaths("demo", "synth"))) == 2

        await pilot.click("#gen-review")
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)
        await pilot.press("a")
        await pilot.pause()
        pref = store.SetPaths("demo", "synth").pref
        assert len(pref.read_text().splitlines()) == 1
    for path in _isolated_home.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


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
