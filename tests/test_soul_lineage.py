"""Identity conversations come from the SOUL; an sft run records the SOUL version it used in
config.yaml, run.json, run_start and checkpoint meta."""

from __future__ import annotations

import json

import pytest

from nanochat_tui import projects, rundir
from nanochat_tui.align.chat import normalize
from nanochat_tui.align.embedded import embedded_conversations, identity_conversations
from nanochat_tui.align.interface import parse_interface
from nanochat_tui.align.soul import parse_soul
from nanochat_tui.config import load_config
from nanochat_tui.errors import UserError

ADA = """\
# Ada
## Persona
A careful tutor who explains with small examples.
## Principles
### Cite sources
Name where a fact comes from.
Critique: Find unsourced claims.
Revision: Add the source or drop the claim.
"""
WEATHER = json.dumps(
    {
        "tools": [
            {
                "name": "weather",
                "description": "Current weather for a city. Uses a local cache.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ]
    }
)


def _answers(convs: list[dict]) -> dict[str, str]:
    return {c["messages"][0]["content"]: c["messages"][1]["content"] for c in convs}


def test_identity_is_derived_from_the_soul():
    soul, interface = parse_soul(ADA), parse_interface(WEATHER)
    convs = identity_conversations(soul, interface)
    assert convs == identity_conversations(soul, interface)  # deterministic
    for conv in convs:
        normalize(conv)
    got = _answers(convs)
    assert got["What is your name?"] == "My name is Ada."
    assert got["Who are you?"] == "I am Ada. A careful tutor who explains with small examples."
    assert got["What are your principles?"] == "I follow 1 principle: Cite sources."
    assert got['What does your principle "Cite sources" mean?'] == "Name where a fact comes from."
    assert "`weather` (Current weather for a city)" in got["Can you use tools?"]
    assert got["What does your `weather` tool do?"].endswith("It takes city.")
    assert "no tools besides" not in got["What can't you do?"]
    starter = _answers(identity_conversations())
    assert starter["What is your name?"] == "My name is nanochat."
    assert "no tools besides my calculator" in starter["What can't you do?"]
    everything = embedded_conversations(soul, interface)
    assert _answers(everything)["What is your name?"] == "My name is Ada."


def test_pin_soul():
    pretrain = load_config("tiny")
    assert projects.pin_soul(pretrain) is pretrain
    sft = load_config("tiny", ["train.stage=sft"])
    assert projects.pin_soul(sft).align.soul_version == 1  # default project, created on use
    project = projects.create_project("ada", ADA)
    project.save_soul(ADA.replace("Ada", "Ada Two"), WEATHER)
    pinned = projects.pin_soul(load_config("tiny", ["train.stage=sft", "align.project=ada"]))
    assert (pinned.align.project, pinned.align.soul_version) == ("ada", 2)
    old = load_config("tiny", ["train.stage=sft", "align.project=ada", "align.soul_version=1"])
    assert projects.pin_soul(old).align.soul_version == 1
    with pytest.raises(UserError, match="no SOUL version v0007"):
        projects.pin_soul(
            old.model_copy(update={"align": old.align.model_copy(update={"soul_version": 7})})
        )
    with pytest.raises(UserError, match="no project named 'nope'"):
        projects.pin_soul(load_config("tiny", ["train.stage=sft", "align.project=nope"]))


def test_sft_run_records_its_soul_version(tmp_path):
    from nanochat_tui.orchestrator.runner import execute, resolve_run_dir

    project = projects.create_project("ada", ADA)
    project.save_soul(ADA.replace("careful", "patient"), WEATHER)
    config = load_config(
        "tiny",
        [
            "model.depth=1", "model.head_dim=32", "model.sequence_len=128",
            "model.vocab_size=300", "data.max_chars=60000", "data.tokenizer_chars=20000",
            "train.device_batch_size=4", "train.total_batch_size=512", "train.eval_every=0",
            "train.sample_every=0", "train.save_every=0", "train.num_iterations=1",
            "train.stage=sft", "align.project=ada", f"run.runs_dir={tmp_path}",
        ],
    )  # fmt: skip
    assert config.align.soul_version is None
    config, run_dir = resolve_run_dir(config, "sft-ada")
    assert config.align.soul_version == 2
    events: list[dict] = []
    result = execute(config, run_dir, resume=False, control=None, callbacks=[events.append])
    assert result.status == "finished"
    saved = load_config(str(run_dir / rundir.CONFIG))
    assert (saved.align.project, saved.align.soul_version) == ("ada", 2)
    record = json.loads((run_dir / rundir.RUN_RECORD).read_text())
    assert (record["project"], record["soul_version"]) == ("ada", 2)
    start = next(e for e in events if e["type"] == "run_start")
    assert start["config"]["align"] == {"project": "ada", "soul_version": 2}
    assert any("SOUL ada/2" in e.get("message", "") for e in events if e["type"] == "log")
    meta = rundir.read_meta(rundir.latest_checkpoint(run_dir).path)
    assert meta["lineage"] == {"init_from": None, "project": "ada", "soul_version": 2}
