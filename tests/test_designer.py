"""Designer plugin, no UI: validation rules name the layer and field, edits and undo/redo,
templates, the design JSON round trip and its schema errors, compilation to a config."""

from __future__ import annotations

import json

import jsonschema
import pytest

from nanochat_tui.bundled.designer import edit as ed
from nanochat_tui.bundled.designer.design import (
    Design,
    Layer,
    MoESpec,
    compile_config,
    dumps,
    json_schema,
    load,
    problems,
    save,
)
from nanochat_tui.bundled.designer.estimates import estimate
from nanochat_tui.bundled.designer.history import History
from nanochat_tui.bundled.designer.templates import names, template
from nanochat_tui.config import load_prefab
from nanochat_tui.errors import UserError


def tiny() -> Design:
    return template("nanochat-d4", 64, 512).model_copy(
        update={
            "layers": [Layer(kind="embedding", width=64)]
            + [Layer(kind="block", n_head=2)] * 2
            + [Layer(kind="norm"), Layer(kind="head")]
        }
    )


def where(design: Design) -> set[tuple[int | None, str]]:
    return {(p.layer, p.field) for p in problems(design)}


def test_valid_design_has_no_problems_and_compiles():
    base = load_prefab("tiny")
    d = tiny()
    assert problems(d) == []
    config = compile_config(d, base)
    # identical plain blocks compile to a plain config (still exportable to HF/ONNX)
    assert config.model.blocks is None and config.model.model_dim == 64
    assert config.model.depth == 2 and config.model.n_head == 2


@pytest.mark.parametrize(
    ("edit", "index", "expected"),
    [
        ("width=60", 0, {(0, "width")}),  # not a multiple of 8 (2 heads of 30 are fine)
        ("width=80", 0, set()),
        ("n_head=3", 1, {(1, "n_head")}),  # 3 heads do not divide 64
        ("n_kv_head=3", 2, {(2, "n_kv_head")}),  # 3 kv heads do not divide 2 heads
        ("window=64", 1, {(1, "window")}),  # not below the context
        ("kind=norm", 1, {(1, "kind")}),  # a norm in the middle of the chain
    ],
)
def test_each_rule_names_the_layer_and_field(edit, index, expected):
    d = ed.apply_edit(tiny(), index, edit)
    assert where(d) == expected


def test_messages_read_well():
    d = ed.apply_edit(tiny(), 0, "width=72")  # a multiple of 8, but 72 / 2 heads = 36 is fine
    assert problems(d) == []
    d = ed.apply_edit(ed.apply_edit(tiny(), 0, "width=40"), 1, "n_head=4")  # 40 / 4 = 10 ok
    d = ed.apply_edit(d, 2, "n_head=8")  # 40 / 8 = 5: odd head size
    assert [str(p) for p in problems(d)] == [
        "layer 2 · n_head: 8 heads do not divide width 40 into an even head size"
    ]


def test_graph_connected():
    d = tiny()
    d2, at = ed.move(d, 0, 1)  # the embedding moved below a block
    assert at == 1 and (1, "kind") in where(d2)
    d3, _ = ed.delete(d, 3)  # no final norm
    assert (3, "kind") in where(d3)
    d4 = d.model_copy(update={"layers": [*d.layers, Layer(kind="block", n_head=2)]})
    assert (4, "kind") in where(d4)  # a block after the head is cut off
    d5 = d.model_copy(update={"layers": [d.layers[0], d.layers[3], d.layers[4]]})
    assert (None, "layers") in where(d5)


def test_moe_rules():
    d = template("nanochat-d4-moe", 64, 512)
    assert problems(d) == []
    too_many = d.model_copy(update={"moe": MoESpec(num_experts=300, top_k=2)})
    assert (None, "moe.num_experts") in where(too_many)
    k = d.model_copy(update={"moe": MoESpec(num_experts=4, top_k=8)})
    assert (None, "moe.top_k") in where(k)
    mixed = ed.apply_edit(d, 2, "mlp=relu2")
    assert (1, "mlp") in where(mixed)  # MoE replaces every MLP: all blocks or none


def test_estimates_moe_and_heterogeneous():
    base = load_prefab("tiny")
    e = estimate(template("nanochat-d4-moe", 64, 512), base)
    assert e.active_params < e.params
    d = ed.apply_edit(tiny(), 1, "mlp=swiglu n_head=4 n_kv_head=1 value_embed=true")
    config = compile_config(d, base)
    assert config.model.blocks is not None and config.model.blocks[0].mlp == "swiglu"
    from nanochat_tui.config.estimates import num_params

    assert estimate(d, base).params == num_params(config.model)
    assert estimate(d, base).params != estimate(tiny(), base).params


def test_edits_and_undo_redo():
    h = History(tiny())
    d, at = ed.add_block(h.current, 1)
    h.push(d)
    assert at == 2 and len(h.current.blocks) == 3
    d, at = ed.duplicate(h.current, 2)
    h.push(d)
    assert len(h.current.blocks) == 4
    h.push(ed.apply_edit(h.current, 1, "n_head=4 seq=128 experts=4"))
    assert h.current.sequence_len == 128 and h.current.moe.num_experts == 4
    assert h.undo() and h.current.sequence_len == 64
    assert h.undo() and len(h.current.blocks) == 3
    assert h.redo() and len(h.current.blocks) == 4
    h.push(ed.delete(h.current, 1)[0])
    assert not h.redo()  # a new edit drops the redo list
    while h.undo():
        pass
    assert h.current == tiny()
    with pytest.raises(ed.EditError, match="unknown field 'heads'"):
        ed.apply_edit(tiny(), 1, "heads=4")
    with pytest.raises(ed.EditError, match="mlp"):
        ed.apply_edit(tiny(), 1, "mlp=gelu")


def test_templates():
    assert "nanochat-d4-moe" not in names(moe=False) and "nanochat-d4-moe" in names(moe=True)
    d20 = template("nanochat-d20")
    assert d20.width == 1280 and len(d20.blocks) == 20 and d20.blocks[0][1].n_head == 10


def test_json_round_trip_and_schema(tmp_path):
    d = ed.apply_edit(template("nanochat-d4-moe", 64, 512), 1, "window=32 value_embed=true")
    path = save(d, tmp_path / "x.design.json")
    assert load(path) == d
    data = json.loads(dumps(d))
    jsonschema.validate(data, json_schema())  # the published schema accepts what we write
    data["layers"][1]["mlp"] = "gelu"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, json_schema())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"layers": [', "x.design.json:1:13: not valid JSON"),
        ('{"layers": [{"kind": "block", "n_head": "four"}]}', "layers.0.n_head"),
        ('{"format": "other"}', "format"),
        ('{"layerz": []}', "layerz: Extra inputs are not permitted"),
    ],
)
def test_bad_files_get_one_readable_message(tmp_path, text, message):
    path = tmp_path / "x.design.json"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load(path)
    assert message in err.value.message and err.value.remediation
    assert "\n" not in err.value.message and "Traceback" not in str(err.value)


def test_moe_design_builds_through_the_moe_plugin_hook():
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.orchestrator.plugin_hooks import engine_hooks

    base = load_prefab("tiny")
    d = ed.apply_edit(template("nanochat-d4-moe", 64, 512), 0, "width=64")
    d = ed.apply_edit(d, 1, "n_head=4 n_kv_head=1")  # heterogeneous attention, MoE everywhere
    config = compile_config(d, base)
    assert config.plugins["moe"]["num_experts"] == 8 and config.model.blocks is not None
    gpt = GPT(config.model, rngs=nnx.Rngs(0), mlp=engine_hooks(config).mlp)
    params = sum(a.size for a in jax.tree.leaves(nnx.state(gpt, nnx.Param)))
    assert params == estimate(d, base).params
    assert gpt(jnp.zeros((1, 8), jnp.int32)).shape == (1, 8, 512)
