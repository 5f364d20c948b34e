"""Keyboard edits of a design: ``field=value`` text applied to one layer or the design, and the
structural moves (add, duplicate, delete, move). Every function returns a new Design."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from nanochat_tui.bundled.designer.design import Design, Layer, MoESpec

LAYER_FIELDS = tuple(Layer.model_fields)
# design-level fields (aliases users type → the field)
DESIGN_FIELDS = {
    "name": "name",
    "recipe": "recipe",
    "seq": "sequence_len",
    "sequence_len": "sequence_len",
    "vocab": "vocab_size",
    "vocab_size": "vocab_size",
    "experts": "num_experts",
    "num_experts": "num_experts",
    "top_k": "top_k",
}


class EditError(ValueError):
    """An edit that cannot apply (unknown field, bad value); the message names the field."""


def _value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("", "none", "null", "-"):
        return None
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    try:
        return int(low)
    except ValueError:
        return text.strip()


def parse_edit(text: str) -> list[tuple[str, Any]]:
    """``"n_head=4 mlp=swiglu"`` → ``[("n_head", 4), ("mlp", "swiglu")]``."""
    out = []
    for part in text.split():
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise EditError(f"'{part}': write field=value (e.g. n_head=4)")
        if key not in LAYER_FIELDS and key not in DESIGN_FIELDS:
            known = ", ".join((*LAYER_FIELDS, *dict.fromkeys(DESIGN_FIELDS)))
            raise EditError(f"unknown field '{key}'; fields: {known}")
        out.append((key, _value(value)))
    return out


def apply_edit(design: Design, index: int | None, text: str) -> Design:
    """Apply ``text`` to layer ``index`` (layer fields) and the design (design fields)."""
    layer_updates: dict[str, Any] = {}
    design_updates: dict[str, Any] = {}
    moe_updates: dict[str, Any] = {}
    for key, value in parse_edit(text):
        if key in LAYER_FIELDS:
            layer_updates[key] = value
        elif DESIGN_FIELDS[key] in ("num_experts", "top_k"):
            moe_updates[DESIGN_FIELDS[key]] = value
        else:
            design_updates[DESIGN_FIELDS[key]] = value
    data = design.model_dump()
    if layer_updates:
        if index is None or not 0 <= index < len(design.layers):
            raise EditError("select a layer first")
        data["layers"][index].update(layer_updates)
        if layer_updates.get("window") is None and "window" in layer_updates:
            data["layers"][index]["window"] = 0
    if moe_updates:
        data["moe"] = {**(data["moe"] or MoESpec().model_dump()), **moe_updates}
    data.update(design_updates)
    try:
        return Design.model_validate(data)
    except ValidationError as err:
        e = err.errors()[0]
        loc = [str(p) for p in e["loc"]]
        field = loc[-1] if loc and not loc[-1].isdigit() else ".".join(loc)
        raise EditError(f"{field}: {e['msg']}") from None


def _replace(design: Design, layers: list[Layer]) -> Design:
    return design.model_copy(update={"layers": layers})


def add_block(design: Design, index: int | None) -> tuple[Design, int]:
    """A new block after ``index`` (a copy of it when it is a block, else of the last block, else
    a 4-head ReLU² block), kept between the embedding and the final norm; returns its index."""
    layers = list(design.layers)
    kinds = [x.kind for x in layers]
    here = layers[index] if index is not None and 0 <= index < len(layers) else None
    blocks = [b for _, b in design.blocks]
    if here is not None and here.kind == "block":
        new = here.model_copy()
    else:
        new = blocks[-1].model_copy() if blocks else Layer(kind="block", n_head=4)
    end = next((i for i, k in enumerate(kinds) if k in ("norm", "head")), len(layers))
    at = end if index is None else min(index + 1, end)
    at = max(at, 1 if kinds and kinds[0] == "embedding" else 0)
    layers.insert(at, new)
    return _replace(design, layers), at


def duplicate(design: Design, index: int) -> tuple[Design, int]:
    layers = list(design.layers)
    layers.insert(index + 1, layers[index].model_copy())
    return _replace(design, layers), index + 1


def delete(design: Design, index: int) -> tuple[Design, int]:
    layers = list(design.layers)
    del layers[index]
    return _replace(design, layers), max(0, min(index, len(layers) - 1))


def move(design: Design, index: int, delta: int) -> tuple[Design, int]:
    to = index + delta
    if not 0 <= to < len(design.layers):
        return design, index
    layers = list(design.layers)
    layers[index], layers[to] = layers[to], layers[index]
    return _replace(design, layers), to
