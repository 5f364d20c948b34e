"""config/compat.py: each mismatched field yields its reason and remediation; a match yields none."""

from __future__ import annotations

import pytest

from nanochat_tui.config import load_prefab
from nanochat_tui.config.compat import (
    adopt,
    check,
    list_nanochat_checkpoints,
    plugin_flags,
    shape_of,
)
from nanochat_tui.config.loader import apply_overrides
from screens_fixtures import make_nanochat


def our_meta(config, **extra):
    m = config.model
    meta = {
        "step": 10,
        "stage": "base",
        "model": m.model_dump(),
        "model_dim": m.model_dim,
        "n_head": m.n_head,
        "n_kv_head": m.kv_heads,
        "vocab_size": m.vocab_size,
        "sequence_len": m.sequence_len,
        "tokenizer_hash": "abcd1234abcd1234",
        "plugins": {"megacontext": False},
    }
    meta.update(extra)
    return meta


def test_matching_meta_yields_nothing():
    config = load_prefab("tiny")
    assert check(config, our_meta(config), tokenizer_hash="abcd1234abcd1234") == []


@pytest.mark.parametrize(
    ("override", "field", "remedy"),
    [
        ("model.depth=4", "depth", "model.depth=2"),
        ("model.aspect_ratio=128", "width", "model.aspect_ratio=64"),
        ("model.head_dim=32", "heads", "model.head_dim=64"),
        ("model.n_kv_head=1", "kv heads", "model.n_kv_head=null"),
        ("model.vocab_size=512", "vocab", "model.vocab_size=4096"),
        ("model.sequence_len=128", "sequence", "model.sequence_len=256"),
    ],
)
def test_each_model_field(override, field, remedy):
    tiny = load_prefab("tiny")
    meta = our_meta(tiny)
    config = apply_overrides(tiny, [override])
    problems = check(config, meta)
    assert [p.field for p in problems] == [field]
    assert remedy in problems[0].remediation
    assert problems[0].reason
    # the checkpoint has tiny's exact shape, so the tip names that prefab
    assert "or pick prefab tiny" in problems[0].remediation


def test_tokenizer_hash_and_plugins():
    config = load_prefab("tiny")
    meta = our_meta(config, plugins={"megacontext": True})
    problems = check(config, meta, tokenizer_hash="ffff0000ffff0000")
    fields = {p.field: p for p in problems}
    assert set(fields) == {"tokenizer", "plugins.megacontext"}
    assert "data.tokenizer" in fields["tokenizer"].remediation
    assert "on" in fields["plugins.megacontext"].reason
    assert fields["plugins.megacontext"].remediation == "set plugins.megacontext.enabled=true"
    on = apply_overrides(config, {"plugins.megacontext": {"enabled": True}})
    assert plugin_flags(on) == {"megacontext": True}
    assert check(on, meta) == []
    # unknown hash on either side is not held against the checkpoint
    assert check(on, meta, tokenizer_hash=None) == []


def test_nanochat_meta_and_prefab_tip(tmp_path, monkeypatch):
    meta_path = make_nanochat(tmp_path / "nc")
    (meta_path.parent / "meta_broken.json").write_text("{")
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path / "nc"))
    [row] = list_nanochat_checkpoints()
    assert (row.stage, row.tag, row.step, row.val_bpb) == ("base", "d12", 21400, 0.8123)
    assert row.size_bytes() >= 5000
    shape = shape_of(row.meta)
    assert (shape.depth, shape.model_dim, shape.head_dim) == (12, 768, 128)
    problems = check(load_prefab("tiny"), row.meta)
    depth = next(p for p in problems if p.field == "depth")
    assert depth.remediation == "set model.depth=12 or pick prefab ten"
    assert check(load_prefab("ten"), row.meta) == []
    fixed = adopt(load_prefab("tiny"), row.meta)
    assert check(fixed, row.meta) == []


def test_recipe_mismatch_is_an_incompatibility():
    tiny = load_prefab("tiny")
    new = apply_overrides(tiny, {"model.recipe": "nanochat-2026"})
    problems = check(tiny, our_meta(new))
    assert [p.field for p in problems] == ["recipe"]
    assert "model.recipe=nanochat-2026" in problems[0].remediation
    assert check(new, our_meta(new)) == []
    # a checkpoint from before recipes (no recipe key) counts as nanochat-2025
    old = our_meta(tiny)
    for key in ("recipe", "value_embeds", "smear", "window_pattern", "init", "vocab_multiple"):
        old["model"].pop(key, None)
    old["model"]["rope_base"] = 10000.0
    assert check(tiny, old) == []
    assert [p.field for p in check(new, old)] == ["recipe"]


def test_each_architecture_switch_mismatch_names_the_switch():
    base = apply_overrides(load_prefab("tiny"), {"model.recipe": "nanochat-2026"})
    meta = our_meta(apply_overrides(base, {"model.smear": False, "model.window_pattern": "L"}))
    problems = check(base, meta)
    assert sorted(p.field for p in problems) == ["model.smear", "model.window_pattern"]
    assert any("model.smear=false" in p.remediation for p in problems)
