"""Run lineage (orchestrator/lineage.py): a real pretrain → sft → dpo pipeline is followed back
to its base with stage, parent step, SOUL version and dataset identity; broken links (missing or
moved parents, cycles, imported and outside runs, old runs without a recorded dataset) are shown
as readable nodes; ``runs --lineage`` prints the chain."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from helpers import tiny
from nanochat_tui.orchestrator import lineage


def _rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, trained_run) -> dict[str, Path]:
    """A real pipeline run through the CLI from the session's pretrained run (the base, outside
    this runs dir): base → sft → dpo."""
    from nanochat_tui.cli import main

    root = tmp_path_factory.mktemp("lineage")
    chat = _rows(
        root / "chat.jsonl",
        [{"prompt": f"What is {i} + 1?", "completion": f"It is {i + 1}."} for i in range(20)],
    )
    prefs = _rows(
        root / "prefs.jsonl",
        [
            {"id": f"p{i}", "prompt": f"What is {i} + {i}?", "chosen": f"It is {2 * i}.",
             "rejected": f"It is {2 * i + 1}."}
            for i in range(20)
        ],
    )  # fmt: skip
    data: dict = {
        "name": "pipe",
        "run": {"runs_dir": str(root / "runs"), "init_from": str(trained_run)},
    }
    for key, value in tiny({"train.num_iterations": 3}).items():
        section, field = key.split(".")
        data.setdefault(section, {})[field] = value
    data["pipeline"] = [
        {"stage": "sft", "set": {"train.num_iterations": 2, "data.source": str(chat),
                                 "data.val_fraction": 0.2}},
        {"stage": "dpo", "set": {"train.num_iterations": 2, "data.source": str(prefs),
                                 "data.val_fraction": 0.2}},
    ]  # fmt: skip
    prefab = root / "pipe.yaml"
    prefab.write_text(yaml.safe_dump(data))
    mp = pytest.MonkeyPatch()
    mp.setenv("NANOCHAT_TUI_HOME", str(root / "home"))
    try:
        assert main(["run", str(prefab), "--name", "a", "--quiet"]) == 0
    finally:
        mp.undo()
    runs = root / "runs"
    return {
        "runs": runs, "base": trained_run, "sft": runs / "a.1-sft", "dpo": runs / "a.2-dpo",
        "chat": chat, "prefs": prefs,
    }  # fmt: skip


def _last(run_dir: Path) -> int:
    from nanochat_tui.rundir import latest_checkpoint

    return latest_checkpoint(run_dir).step


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def test_dpo_run_resolves_to_base_sft_dpo(pipeline):
    nodes = lineage.resolve(pipeline["dpo"], pipeline["runs"])
    assert [(n.name, n.stage) for n in nodes] == [
        ("trained", "pretrain"), ("a.1-sft", "sft"), ("a.2-dpo", "dpo"),
    ]  # fmt: skip
    base, sft, dpo = nodes
    assert not any(n.problem for n in nodes)
    assert base.init_from is None and base.from_step is None
    # the base's last checkpoint (init_from names its run dir: the step is recorded at start)
    assert (sft.from_step, sft.parent) == (_last(pipeline["base"]), "trained")
    assert (dpo.from_step, dpo.parent) == (2, "a.1-sft")
    # the SOUL the alignment runs pinned at start (the default project's first version)
    assert (sft.project, sft.soul_version) == ("default", 1)
    assert (dpo.project, dpo.soul_version) == ("default", 1)
    # the datasets: a file's rows and the first 12 hex digits of its SHA-256 (as sha256sum)
    assert dpo.dataset == lineage.Dataset(
        str(pipeline["prefs"].resolve()), 20, _sha(pipeline["prefs"])
    )
    assert sft.dataset == lineage.Dataset(
        str(pipeline["chat"].resolve()), 20, _sha(pipeline["chat"])
    )
    # the session's base was trained by train() alone (no events.jsonl): its config names it
    assert base.dataset == lineage.Dataset("embedded")
    assert "pipeline a: step 2/2" in dpo.notes
    assert f"outside the runs dir: {pipeline['base']}" in base.notes
    assert lineage.chain_text(nodes) == "trained (pretrain) → a.1-sft (sft) → a.2-dpo (dpo)"
    text = lineage.describe(nodes)
    assert (
        "SOUL: default v1" in text and f"prefs.jsonl (20 rows, #{_sha(pipeline['prefs'])})" in text
    )
    assert "started from: step 2 of a.1-sft" in text


def test_cli_prints_the_chain(pipeline, capsys):
    from nanochat_tui.cli import main

    assert main(["runs", "--lineage", str(pipeline["dpo"]), "--dir", str(pipeline["runs"])]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "trained (pretrain) → a.1-sft (sft) → a.2-dpo (dpo)"
    assert main(["runs", "--lineage", str(pipeline["sft"]), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["stage"] for d in lines] == ["pretrain", "sft"]
    assert lines[1]["dataset"]["rows"] == 20
    assert main(["runs", "--lineage", str(pipeline["runs"] / "nope")]) == 2
    assert "no run directory" in capsys.readouterr().err
    assert main(["runs", "--lineage", str(pipeline["runs"])]) == 2  # a folder, not a run
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("not a readable run") == 1


def _copy(pipeline, tmp_path: Path) -> dict[str, Path]:
    """A copy of the pipeline's three runs (their init_from still name the originals)."""
    out = {}
    for key in ("base", "sft", "dpo"):
        out[key] = tmp_path / pipeline[key].name
        shutil.copytree(pipeline[key], out[key], ignore=shutil.ignore_patterns("checkpoints"))
    return out


def _set_init(run_dir: Path, init: str | None) -> None:
    path = run_dir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["run"]["init_from"] = init
    path.write_text(yaml.safe_dump(config))


def test_missing_and_moved_parents_are_nodes(pipeline, tmp_path):
    runs = _copy(pipeline, tmp_path)
    _set_init(runs["dpo"], str(tmp_path / "gone" / "checkpoints" / "2"))
    nodes = lineage.resolve(runs["dpo"], tmp_path)
    assert nodes[0].problem == f"parent missing: {tmp_path / 'gone' / 'checkpoints' / '2'}"
    assert nodes[1].name == "a.2-dpo" and nodes[1].from_step == 2
    assert lineage.chain_text(nodes).startswith("⚠ parent missing: ")
    # the parent run is there but its checkpoint was rotated out
    _set_init(runs["dpo"], str(runs["sft"] / "checkpoints" / "2"))
    nodes = lineage.resolve(runs["dpo"], tmp_path)
    assert [n.name for n in nodes] == ["trained", "a.1-sft", "a.2-dpo"]
    assert "its parent's checkpoint 2 is no longer on disk" in nodes[2].notes
    # a deleted run itself
    assert (
        lineage.resolve(tmp_path / "deleted")[0].problem == f"run missing: {tmp_path / 'deleted'}"
    )


def test_cycles_and_long_chains_stop(pipeline, tmp_path):
    runs = _copy(pipeline, tmp_path)
    _set_init(runs["sft"], str(runs["base"]))
    _set_init(runs["base"], str(runs["dpo"]))  # base ← dpo ← sft ← base: a cycle
    _set_init(runs["dpo"], str(runs["sft"]))
    nodes = lineage.resolve(runs["dpo"], tmp_path)
    assert nodes[0].problem == f"cycle: {runs['dpo']} again"
    assert [n.name for n in nodes[1:]] == ["trained", "a.1-sft", "a.2-dpo"]
    nodes = lineage.resolve(runs["dpo"], tmp_path, max_depth=2)
    assert nodes[0].problem == "more than 2 runs: stopped here"


def test_old_imported_unreadable_and_outside_runs(pipeline, tmp_path):
    runs = _copy(pipeline, tmp_path)
    # an old run: its run_start has no dataset, no initialised_from; the config names the source
    events = runs["sft"] / "events.jsonl"
    kept = []
    for line in events.read_text().splitlines():
        event = json.loads(line)
        if event["type"] == "run_start":
            event.pop("dataset"), event.pop("initialised_from")
        kept.append(json.dumps(event))
    events.write_text("\n".join(kept) + "\n")
    nodes = lineage.resolve(runs["sft"], pipeline["runs"])
    assert nodes[1].dataset == lineage.Dataset(str(pipeline["chat"]))
    assert nodes[1].dataset.label() == "chat.jsonl (rows and hash not recorded)"
    assert nodes[1].from_step == _last(pipeline["base"])  # from its "initialised weights" log
    assert f"outside the runs dir: {runs['sft']}" in nodes[1].notes
    # an unreadable run as parent
    junk = tmp_path / "junk"
    junk.mkdir()
    _set_init(runs["sft"], str(junk))
    nodes = lineage.resolve(runs["sft"], tmp_path)
    assert nodes[0].problem.startswith(f"not a readable run: {junk}")
    # damaged files never raise
    (runs["dpo"] / "config.yaml").write_text("run: [unclosed\n")
    (runs["dpo"] / "run.json").write_text("{not json")
    (runs["dpo"] / "events.jsonl").write_bytes(b"\xff\xfe garbage\n")
    nodes = lineage.resolve(runs["dpo"], tmp_path)
    assert len(nodes) == 1 and nodes[0].problem.startswith("not a readable run")


def test_imported_checkpoint_is_a_root(tmp_path):
    """An imported run (export/run_writer.py's layout: checkpoint meta with ``origin``)."""
    from nanochat_tui.config import load_config
    from nanochat_tui.config.loader import to_yaml
    from nanochat_tui.rundir import meta_path

    run_dir = tmp_path / "imported"
    step = run_dir / "checkpoints" / "21400"
    meta_path(step).parent.mkdir(parents=True)
    meta_path(step).write_text(
        json.dumps({"step": 21400, "stage": "sft", "reason": "import",
                    "origin": {"path": "/models/d12", "format": "nanochat"}})
    )  # fmt: skip
    config = load_config("tiny")
    config.train.stage = "sft"
    (run_dir / "config.yaml").write_text(to_yaml(config))
    (node,) = lineage.resolve(run_dir, tmp_path)
    assert node.stage == "sft" and "imported from /models/d12" in node.notes


# ---------------------------------------------------------------- the Runs pane (Pilot)


@pytest.mark.anyio
async def test_runs_pane_shows_a_dpo_runs_lineage(pipeline, monkeypatch, screen_text):
    from helpers import pilot_wait_for
    from nanochat_tui.tui.app import NanochatApp
    from nanochat_tui.tui.screens.lineage import LineageScreen

    monkeypatch.setenv("NANOCHAT_TUI_RUNS", str(pipeline["runs"]))
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("4")
        pane = app.query_one("RunsPane")
        # the pipeline's parent run "a" and its two steps (docs/runs.md "Pipelines")
        names = lambda: sorted(s.name for s in pane.runs)  # noqa: E731
        await pilot_wait_for(pilot, lambda: names() == ["a", "a.1-sft", "a.2-dpo"], 30, "runs")
        table = pane.query_one("#runs-table")
        row = next(i for i, s in enumerate(pane.runs) if s.name == "a.2-dpo")
        table.focus()
        table.move_cursor(row=row)
        await pilot_wait_for(
            pilot,
            lambda: "trained (pretrain) → a.1-sft (sft) → a.2-dpo (dpo)" in screen_text(app),
            10,
            "the lineage line",
        )
        await pilot.press("g")
        await pilot_wait_for(pilot, lambda: isinstance(app.screen, LineageScreen), 10, "view")
        text = screen_text(app)
        assert "SOUL: default v1" in text, text
        assert f"prefs.jsonl (20 rows, #{_sha(pipeline['prefs'])})" in text
        assert f"chat.jsonl (20 rows, #{_sha(pipeline['chat'])})" in text
        assert "started from: step 2 of a.1-sft" in text
        assert f"started from: step {_last(pipeline['base'])} of trained" in text
        await pilot.press("escape")
        await pilot_wait_for(pilot, lambda: not isinstance(app.screen, LineageScreen), 10, "close")


def test_odd_files_never_raise(tmp_path):
    """A checkpoint meta that is not an object, a parent that is a symlink loop."""
    from nanochat_tui.rundir import meta_path

    run_dir = tmp_path / "odd"
    meta_path(run_dir / "checkpoints" / "5").parent.mkdir(parents=True)
    meta_path(run_dir / "checkpoints" / "5").write_text("[1, 2]")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"run": {"init_from": str(loop)}}))
    nodes = lineage.resolve(run_dir, tmp_path)
    assert nodes[0].problem == f"parent missing: {loop}"
    assert (nodes[1].name, nodes[1].stage, nodes[1].problem) == ("odd", None, None)
    assert lineage.chain_text(nodes) == f"⚠ parent missing: {loop} → odd (?)"
