"""Is a checkpoint compatible with a config? Reasons and remediations, from the metadata JSON alone.

Reads two metadata formats without JAX or torch:

* ours (``run_dir/checkpoints/<step>/meta/metadata``): ``model`` (a ModelConfig dump, with
  ``recipe`` and its switches), ``model_dim``, ``n_head``, ``n_kv_head``, ``vocab_size``,
  ``sequence_len``, ``tokenizer_hash``, ``plugins``;
* nanochat's (``$NANOCHAT_BASE_DIR/<stage>_checkpoints/<tag>/meta_<step>.json``): ``model_config``
  = {sequence_len, vocab_size, n_layer, n_head, n_kv_head, n_embd}, ``step``, ``val_bpb``, ...

``check(config, meta)`` returns one :class:`Incompat` per mismatched field, each with a tip such as
"set model.depth=12 or pick prefab ten" (the prefab named only when one matches the checkpoint).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from nanochat_tui.config.recipes import DEFAULTS
from nanochat_tui.config.schema import Config


@dataclass(frozen=True)
class Incompat:
    """One reason a checkpoint does not fit the active config."""

    field: str  # short name: depth, width, heads, kv heads, vocab, sequence, tokenizer, plugins.<x>
    reason: str
    remediation: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason} → {self.remediation}"


@dataclass(frozen=True)
class Shape:
    """The architecture numbers a checkpoint fixes, normalised across both formats."""

    depth: int | None = None
    model_dim: int | None = None
    n_head: int | None = None
    n_kv_head: int | None = None
    vocab_size: int | None = None
    sequence_len: int | None = None

    @property
    def aspect_ratio(self) -> int | None:
        if self.depth and self.model_dim and self.model_dim % self.depth == 0:
            return self.model_dim // self.depth
        return None

    @property
    def head_dim(self) -> int | None:
        if self.n_head and self.model_dim and self.model_dim % self.n_head == 0:
            return self.model_dim // self.n_head
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def shape_of(meta: dict[str, Any]) -> Shape:
    """Architecture of a checkpoint from our meta JSON or nanochat's."""
    nc = meta.get("model_config")
    if isinstance(nc, dict) and "n_layer" in nc:  # nanochat
        return Shape(
            depth=_int(nc.get("n_layer")),
            model_dim=_int(nc.get("n_embd")),
            n_head=_int(nc.get("n_head")),
            n_kv_head=_int(nc.get("n_kv_head", nc.get("n_head"))),
            vocab_size=_int(nc.get("vocab_size")),
            sequence_len=_int(nc.get("sequence_len")),
        )
    model = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    depth = _int(model.get("depth"))
    model_dim = _int(meta.get("model_dim"))
    if model_dim is None and depth and model.get("aspect_ratio"):
        model_dim = depth * int(model["aspect_ratio"])
    n_head = _int(meta.get("n_head"))
    if n_head is None and model_dim and model.get("head_dim"):
        n_head = max(1, model_dim // int(model["head_dim"]))
    n_kv = _int(meta.get("n_kv_head")) or _int(model.get("n_kv_head")) or n_head
    return Shape(
        depth=depth,
        model_dim=model_dim,
        n_head=n_head,
        n_kv_head=n_kv,
        vocab_size=_int(meta.get("vocab_size")) or _int(model.get("vocab_size")),
        sequence_len=_int(meta.get("sequence_len")) or _int(model.get("sequence_len")),
    )


def checkpoint_switches(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The resolved recipe switches of a checkpoint's model (None when the meta has no model dump).

    A checkpoint from before recipes existed (no ``recipe`` key) was ``nanochat-2025``; nanochat's
    own checkpoints carry no switches and are not judged here.
    """
    from pydantic import ValidationError

    from nanochat_tui.config.schema import ModelConfig

    model = meta.get("model")
    if not isinstance(model, dict):
        return None
    try:
        resolved = ModelConfig.model_validate(model).resolved()
    except ValidationError:
        return None
    return {k: getattr(resolved, k) for k in ("recipe", *DEFAULTS["model"])}


def recipe_mismatches(config: Config, meta: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(field, reason, override) for the recipe and each architecture switch that differs."""
    theirs = checkpoint_switches(meta)
    if theirs is None:
        return []
    ours = config.model.resolved()
    if theirs["recipe"] != ours.recipe:
        return [
            (
                "recipe",
                f"checkpoint trained with recipe {theirs['recipe']}, config uses {ours.recipe}",
                f"model.recipe={theirs['recipe']}",
            )
        ]
    out = []
    for key, value in theirs.items():
        if key != "recipe" and getattr(ours, key) != value:
            shown = (
                "null"
                if value is None
                else str(value).lower()
                if isinstance(value, bool)
                else value
            )
            out.append(
                (
                    f"model.{key}",
                    f"checkpoint has {key}={value}, config {getattr(ours, key)}",
                    f"model.{key}={shown}",
                )
            )
    return out


def config_shape(config: Config) -> Shape:
    m = config.model
    return Shape(m.depth, m.model_dim, m.n_head, m.kv_heads, m.vocab_size, m.sequence_len)


def plugin_flags(config: Config) -> dict[str, bool]:
    """Which plugins a config switches on: a ``plugins.<name>`` section with ``enabled`` (default on)."""
    flags: dict[str, bool] = {}
    for name, section in config.plugins.items():
        flags[name] = (
            bool(section.get("enabled", True)) if isinstance(section, dict) else bool(section)
        )
    return flags


def shape_overrides(shape: Shape) -> dict[str, Any]:
    """``--set`` overrides that make a config's model match ``shape`` (only the known numbers)."""
    out: dict[str, Any] = {}
    if shape.depth:
        out["model.depth"] = shape.depth
    if shape.aspect_ratio:
        out["model.aspect_ratio"] = shape.aspect_ratio
    if shape.head_dim:
        out["model.head_dim"] = shape.head_dim
    if shape.n_kv_head:
        out["model.n_kv_head"] = shape.n_kv_head if shape.n_kv_head != shape.n_head else None
    if shape.vocab_size:
        out["model.vocab_size"] = shape.vocab_size
    if shape.sequence_len:
        out["model.sequence_len"] = shape.sequence_len
    return out


def adopt(config: Config, meta: dict[str, Any]) -> Config:
    """``config`` with its model reshaped to the checkpoint's (total batch rounded to stay valid)."""
    from nanochat_tui.config.loader import apply_overrides

    overrides = shape_overrides(shape_of(meta))
    seq = overrides.get("model.sequence_len", config.model.sequence_len)
    per_step = config.train.device_batch_size * seq
    total = max(per_step, -(-config.train.total_batch_size // per_step) * per_step)
    overrides["train.total_batch_size"] = total
    return apply_overrides(config, overrides)


def matching_prefab(shape: Shape, stage: str = "pretrain") -> str | None:
    """Name of a bundled or user prefab whose model matches ``shape`` exactly, if any; one of
    the checkpoint's own ``stage`` first (several prefabs share the tiny model)."""
    from nanochat_tui.config.loader import ConfigError, list_prefabs, load_prefab

    found: list[tuple[bool, str]] = []
    for name in list_prefabs():
        try:
            config = load_prefab(name)
        except ConfigError:
            continue
        if config_shape(config) == shape:
            found.append((config.train.stage != stage, name))
    return min(found)[1] if found else None


def check(
    config: Config,
    meta: dict[str, Any],
    tokenizer_hash: str | None = None,
    *,
    suggest_prefab: bool = True,
) -> list[Incompat]:
    """Every way ``meta``'s checkpoint conflicts with ``config``; empty when it fits.

    ``tokenizer_hash`` is the hash of the tokenizer the config would use (when known); it is compared
    with the checkpoint's ``tokenizer_hash``. Unknown numbers in the meta are not held against it.
    """
    have = config_shape(config)
    want = shape_of(meta)
    found: list[tuple[str, str, str]] = []  # field, reason, override

    if want.depth is not None and want.depth != have.depth:
        found.append(
            (
                "depth",
                f"checkpoint has {want.depth} layers, config {have.depth}",
                f"model.depth={want.depth}",
            )
        )
    saved = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    if saved.get("width") or config.model.width:
        if want.model_dim is not None and want.model_dim != have.model_dim:
            found.append(
                (
                    "width",
                    f"checkpoint width {want.model_dim}, config {have.model_dim}",
                    f"model.width={want.model_dim}",
                )
            )
    elif want.aspect_ratio is not None and want.aspect_ratio != config.model.aspect_ratio:
        found.append(
            (
                "width",
                f"checkpoint width {want.model_dim} ({want.depth} × {want.aspect_ratio}), "
                f"config {have.model_dim} ({have.depth} × {config.model.aspect_ratio})",
                f"model.aspect_ratio={want.aspect_ratio}",
            )
        )
    if want.head_dim is not None and want.head_dim != config.model.head_dim:
        found.append(
            (
                "heads",
                f"checkpoint has {want.n_head} heads of {want.head_dim}, "
                f"config {have.n_head} of {config.model.head_dim}",
                f"model.head_dim={want.head_dim}",
            )
        )
    # kv heads: compare the explicit GQA setting ("same as n_head" is None on both sides)
    want_kv = want.n_kv_head if want.n_kv_head != want.n_head else None
    have_kv = config.model.n_kv_head if config.model.n_kv_head != have.n_head else None
    if want.n_kv_head is not None and want_kv != have_kv:
        found.append(
            (
                "kv heads",
                f"checkpoint has {want.n_kv_head} key/value heads, config {have.n_kv_head}",
                f"model.n_kv_head={'null' if want_kv is None else want_kv}",
            )
        )
    if want.vocab_size is not None and want.vocab_size != have.vocab_size:
        found.append(
            (
                "vocab",
                f"checkpoint vocabulary {want.vocab_size}, config {have.vocab_size}",
                f"model.vocab_size={want.vocab_size}",
            )
        )
    if want.sequence_len is not None and want.sequence_len != have.sequence_len:
        found.append(
            (
                "sequence",
                f"checkpoint context {want.sequence_len} tokens, config {have.sequence_len}",
                f"model.sequence_len={want.sequence_len}",
            )
        )

    found.extend(recipe_mismatches(config, meta))
    ours_blocks = config.model.model_dump(mode="json")["blocks"]
    if saved and saved.get("blocks") != ours_blocks:
        found.append(
            (
                "blocks",
                "checkpoint's per-block design (model.blocks) differs from the config's",
                f"model.blocks={json.dumps(saved.get('blocks'), separators=(',', ':'))}",
            )
        )

    prefab = None
    if (
        found
        and suggest_prefab
        and all(v is not None for v in (want.depth, want.model_dim, want.n_head, want.vocab_size))
    ):
        stage = str(meta.get("stage") or "pretrain")
        prefab = matching_prefab(
            want, "pretrain" if stage == "base" else stage
        )  # "base": older runs
    tail = f" or pick prefab {prefab}" if prefab else ""
    out = [Incompat(f, r, f"set {o}{tail}") for f, r, o in found]

    ckpt_hash = meta.get("tokenizer_hash")
    if tokenizer_hash and ckpt_hash and tokenizer_hash != ckpt_hash:
        out.append(
            Incompat(
                "tokenizer",
                f"checkpoint tokenizer {ckpt_hash}, config's {tokenizer_hash}",
                "set data.tokenizer to the checkpoint run's tokenizer.json",
            )
        )

    theirs = meta.get("plugins") if isinstance(meta.get("plugins"), dict) else {}
    ours = plugin_flags(config)
    for name in sorted(set(theirs) | set(ours)):
        a, b = bool(theirs.get(name, False)), ours.get(name, False)
        if a != b:
            on = lambda x: "on" if x else "off"  # noqa: E731
            out.append(
                Incompat(
                    f"plugins.{name}",
                    f"checkpoint trained with {name} {on(a)}, config has it {on(b)}",
                    f"set plugins.{name}.enabled={'true' if a else 'false'}",
                )
            )
    return out + plugin_shape_mismatches(config, meta)


def plugin_shape_mismatches(config: Config, meta: dict[str, Any]) -> list[Incompat]:
    """Plugin fields that shape parameters (the checkpoint's ``plugin_shape``, e.g.
    ``plugins.moe.num_experts``) and differ in ``config``, for plugins that are on in both."""
    recorded = meta.get("plugin_shape")
    if not isinstance(recorded, dict):
        return []
    flags = plugin_flags(config)
    out = []
    for dotted, want in sorted(recorded.items()):
        _, name, key = [*str(dotted).split(".", 2), "", ""][:3]
        section = config.plugins.get(name)
        if not flags.get(name) or not isinstance(section, dict) or section.get(key) == want:
            continue
        shown = "true" if want is True else "false" if want is False else want
        out.append(
            Incompat(
                dotted,
                f"checkpoint has {dotted}={shown}, config {section.get(key)}",
                f"set {dotted}={shown}",
            )
        )
    return out


# ---------------------------------------------------------------- nanochat (PyTorch) checkpoints

NANOCHAT_STAGES = {"base": "base", "mid": "mid", "chatsft": "sft", "chatrl": "rl"}
_META_RE = re.compile(r"^meta_(\d+)\.json$")


def nanochat_base_dir() -> Path:
    """``$NANOCHAT_BASE_DIR`` or nanochat's default ``~/.cache/nanochat``."""
    env = os.environ.get("NANOCHAT_BASE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nanochat"


@dataclass
class NanochatCheckpoint:
    """A checkpoint written by karpathy/nanochat: listed read-only, never loaded."""

    path: Path  # the meta_<step>.json file
    step: int
    stage: str
    tag: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def val_bpb(self) -> float | None:
        value = self.meta.get("val_bpb")
        return float(value) if isinstance(value, int | float) else None

    def size_bytes(self) -> int:
        total = 0
        for prefix in ("model", "optim", "meta"):
            for p in self.path.parent.glob(f"{prefix}_{self.step:06d}*"):
                total += p.stat().st_size if p.is_file() else 0
        return total

    @property
    def mtime(self) -> datetime:
        return datetime.fromtimestamp(self.path.stat().st_mtime)


def list_nanochat_checkpoints(base: Path | None = None) -> list[NanochatCheckpoint]:
    """``<base>/*_checkpoints/*/meta_*.json`` parsed into rows (unreadable files skipped)."""
    base = base if base is not None else nanochat_base_dir()
    found: list[NanochatCheckpoint] = []
    if not base.is_dir():
        return found
    for stage_dir in sorted(base.glob("*_checkpoints")):
        stage_key = stage_dir.name.removesuffix("_checkpoints")
        stage = NANOCHAT_STAGES.get(stage_key, stage_key)
        for tag_dir in sorted(p for p in stage_dir.iterdir() if p.is_dir()):
            for meta_file in sorted(tag_dir.glob("meta_*.json")):
                match = _META_RE.match(meta_file.name)
                if not match:
                    continue
                try:
                    meta = json.loads(meta_file.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if isinstance(meta, dict):
                    step = _int(meta.get("step"))
                    found.append(
                        NanochatCheckpoint(
                            meta_file,
                            step if step is not None else int(match.group(1)),
                            stage,
                            tag_dir.name,
                            meta,
                        )
                    )
    return found
