"""A model design: the layer list the designer edits, its JSON file format, its validation rules
and its compilation to a run config (``model.width`` + ``model.blocks``, and ``plugins.moe`` for
MoE designs). Pure data: no Textual, no JAX.

A design is a chain ``embedding → block × N → norm → head``; each block has its own attention
(heads, kv heads, window), MLP (relu2, swiglu or moe) and value-embedding switch. The file format
is documented in docs/designer.md and described by :func:`json_schema`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nanochat_tui.errors import UserError

FORMAT = "nanochat-tui/design"
VERSION = 1
MAX_EXPERTS = 256  # plugins.moe's num_experts limit
Kind = Literal["embedding", "block", "norm", "head"]
MLP = Literal["relu2", "swiglu", "moe"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Layer(_Strict):
    """One node of the chain; fields that do not apply to its ``kind`` are ignored."""

    kind: Kind = Field(description="embedding | block | norm | head")
    width: int | None = Field(None, ge=1, description="embedding: model width (model_dim)")
    n_head: int | None = Field(None, ge=1, description="block: query heads (head size = width/n)")
    n_kv_head: int | None = Field(None, ge=1, description="block: key/value heads; empty = n_head")
    window: int = Field(0, ge=0, description="block: attention window in tokens; 0 = full causal")
    mlp: MLP = Field("relu2", description="block: relu2 | swiglu | moe")
    mlp_hidden: int | None = Field(
        None,
        ge=8,
        description="block: MLP hidden width; empty = 4·width (relu2), 8/3·width (swiglu)",
    )
    value_embed: bool = Field(False, description="block: gated value embedding (ResFormer)")


class MoESpec(_Strict):
    """Experts of the blocks whose MLP is ``moe`` (the MoE plugin's ``plugins.moe``)."""

    num_experts: int = Field(8, ge=1, description="experts per layer")
    top_k: int = Field(2, ge=1, description="experts per token")


class Design(_Strict):
    """A whole design file (``*.design.json``)."""

    format: Literal["nanochat-tui/design"] = FORMAT
    version: Literal[1] = VERSION
    name: str = Field("design", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][\w.-]*$")
    recipe: Literal["nanochat-2025", "nanochat-2026"] = "nanochat-2025"
    sequence_len: int = Field(2048, ge=8, le=131072)
    vocab_size: int = Field(65536, ge=260, le=1_048_576)
    moe: MoESpec | None = None
    layers: list[Layer] = Field(default_factory=list)

    @property
    def width(self) -> int:
        emb = [layer for layer in self.layers if layer.kind == "embedding"]
        return (emb[0].width or 0) if emb else 0

    @property
    def blocks(self) -> list[tuple[int, Layer]]:
        return [(i, layer) for i, layer in enumerate(self.layers) if layer.kind == "block"]


@dataclass(frozen=True)
class Problem:
    """One validation error: which layer (index into ``layers``, None = the design) and field."""

    layer: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = "design" if self.layer is None else f"layer {self.layer}"
        return f"{where} · {self.field}: {self.message}"


def problems(design: Design) -> list[Problem]:
    """Every rule the design breaks (empty = it compiles to a config the engine trains)."""
    out: list[Problem] = []
    layers = design.layers
    kinds = [layer.kind for layer in layers]
    # graph connected: embedding first, ≥1 block, a final norm, the head last, nothing cut off
    if kinds.count("embedding") != 1 or kinds[0] != "embedding":
        at = kinds.index("embedding") if "embedding" in kinds else None
        out.append(Problem(at, "kind", "the chain must start with exactly one embedding"))
    if kinds.count("head") != 1 or kinds[-1] != "head":
        at = kinds.index("head") if "head" in kinds else None
        out.append(
            Problem(
                at,
                "kind",
                "the chain must end with exactly one head; layers after it are not connected",
            )
        )
    if "block" not in kinds:
        out.append(Problem(None, "layers", "add at least one transformer block"))
    for i, kind in enumerate(kinds):
        if kind == "norm" and (i + 1 >= len(kinds) or kinds[i + 1] != "head"):
            out.append(
                Problem(
                    i,
                    "kind",
                    "blocks normalise their own inputs; a norm layer "
                    "belongs only right before the head",
                )
            )
    if "head" in kinds and (kinds.index("head") < 1 or kinds[kinds.index("head") - 1] != "norm"):
        out.append(
            Problem(
                kinds.index("head"),
                "kind",
                "the head reads a final norm: put a norm layer right before it",
            )
        )
    width = design.width
    if "embedding" in kinds and width % 8:
        out.append(
            Problem(kinds.index("embedding"), "width", f"width {width} is not a multiple of 8")
        )
    moe_blocks = [i for i, b in design.blocks if b.mlp == "moe"]
    for i, b in design.blocks:
        heads = b.n_head or 0
        if not heads:
            out.append(Problem(i, "n_head", "set the number of heads"))
        elif width and (width % heads or (width // heads) % 2):
            out.append(
                Problem(
                    i, "n_head", f"{heads} heads do not divide width {width} into an even head size"
                )
            )
        kv = b.n_kv_head or heads
        if heads and heads % kv:
            out.append(Problem(i, "n_kv_head", f"{kv} kv heads do not divide {heads} heads"))
        if b.window and b.window >= design.sequence_len:
            out.append(
                Problem(
                    i,
                    "window",
                    f"window {b.window} ≥ sequence_len "
                    f"{design.sequence_len}; use 0 for full attention",
                )
            )
        if b.mlp == "moe" and b.mlp_hidden:
            out.append(
                Problem(
                    i,
                    "mlp_hidden",
                    "an MoE block's expert width comes from the moe settings; clear mlp_hidden",
                )
            )
    if moe_blocks:
        if len(moe_blocks) != len(design.blocks):
            out.append(
                Problem(
                    moe_blocks[0],
                    "mlp",
                    "the MoE plugin replaces every block's MLP: make all blocks moe or none",
                )
            )
        if design.moe is None:
            out.append(Problem(None, "moe", "set num_experts and top_k for the moe blocks"))
        else:
            if design.moe.num_experts > MAX_EXPERTS or design.moe.num_experts < 2:
                out.append(
                    Problem(
                        None,
                        "moe.num_experts",
                        f"{design.moe.num_experts} experts; use 2 to {MAX_EXPERTS}",
                    )
                )
            if design.moe.top_k > design.moe.num_experts:
                out.append(
                    Problem(
                        None,
                        "moe.top_k",
                        f"top_k {design.moe.top_k} > {design.moe.num_experts} experts",
                    )
                )
    return out


def compile_config(design: Design, base: Any) -> Any:
    """The run config for ``design`` on top of ``base`` (its data/train/optim stay): the model
    section is replaced. Raises UserError listing the problems when the design is invalid."""
    from nanochat_tui.config.loader import ConfigError, apply_overrides

    found = problems(design)
    if found:
        raise UserError(
            "the design is not valid: " + "; ".join(str(p) for p in found),
            "fix the listed layers in the designer",
        )
    blocks = [b for _, b in design.blocks]
    width = design.width
    specs = [
        {
            "n_head": b.n_head,
            "n_kv_head": b.n_kv_head or b.n_head,
            "window": b.window,
            "mlp": "relu2" if b.mlp == "moe" else b.mlp,
            "mlp_hidden": b.mlp_hidden,
            "value_embed": b.value_embed,
        }
        for b in blocks
    ]
    first = blocks[0]
    overrides: dict[str, Any] = {
        "model.recipe": design.recipe,
        "model.depth": len(blocks),
        "model.width": width,
        "model.head_dim": width // first.n_head,
        "model.n_kv_head": None,
        "model.sequence_len": design.sequence_len,
        "model.vocab_size": design.vocab_size,
        "model.window_pattern": None,
        "model.value_embeds": None,
        "model.blocks": specs,
    }
    plugins = {k: v for k, v in dict(base.plugins).items() if k != "moe"}
    if first.mlp == "moe":
        plugins["moe"] = {
            "enabled": True,
            "num_experts": design.moe.num_experts,
            "top_k": design.moe.top_k,
        }
    overrides["plugins"] = plugins
    per_step = base.train.device_batch_size * design.sequence_len
    total = max(per_step, -(-base.train.total_batch_size // per_step) * per_step)
    overrides["train.total_batch_size"] = total
    try:
        config = apply_overrides(base, overrides)
        return _simplify(config)
    except ConfigError as err:
        raise UserError(f"the design does not compile: {err}", "fix it in the designer") from err


def _simplify(config: Any) -> Any:
    """Drop ``model.blocks`` when every block is the plain nanochat block of the same config
    (such a design stays exportable to Hugging Face and ONNX)."""
    from nanochat_tui.config.loader import apply_overrides

    m = config.model
    first = m.blocks[0]
    kv = None if first.n_kv_head == first.n_head else first.n_kv_head
    plain = apply_overrides(config, {"model.blocks": None, "model.n_kv_head": kv})
    uniform = plain.model.block_settings() == m.block_settings()
    if not uniform:
        return config
    if m.model_dim % m.depth == 0 and m.model_dim // m.depth >= 8:
        ar = m.model_dim // m.depth
        plain = apply_overrides(plain, {"model.width": None, "model.aspect_ratio": ar})
    return plain


# ---------------------------------------------------------------- files


def load(path: Path) -> Design:
    """Read a design file; bad JSON or a bad field is one UserError naming the place."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}", "check the path") from None
    except json.JSONDecodeError as err:
        raise UserError(
            f"{path}:{err.lineno}:{err.colno}: not valid JSON ({err.msg})",
            "fix the JSON (docs/designer.md shows the format) or save the design again",
        ) from None
    return parse(data, str(path))


def parse(data: Any, source: str = "design") -> Design:
    """Validate a decoded design; the first schema error becomes one readable UserError."""
    try:
        return Design.model_validate(data)
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
        raise UserError(
            f"{source}: {where}: {e['msg']}{more}",
            "fix that field (docs/designer.md lists every field) or save the design again",
        ) from None


def dumps(design: Design) -> str:
    return json.dumps(design.model_dump(mode="json"), indent=1) + "\n"


def save(design: Design, path: Path) -> Path:
    """Write ``design`` atomically."""
    from nanochat_tui.rundir import write_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, dumps(design))
    return path


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a design file."""
    schema = Design.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nanochat-tui model design"
    return schema
