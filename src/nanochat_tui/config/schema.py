"""The run configuration: one validated tree, loaded from a prefab YAML plus ``--set`` overrides.

Every field carries a type, a range where one makes sense, and a one-line description; the TUI's
config screen and the CLI's error messages are generated from these. ``extra="forbid"`` everywhere,
so a typo in a key fails before a run starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

Recipe = Literal["nanochat-2025", "nanochat-2026"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


MLPKind = Literal["relu2", "swiglu"]


class BlockSpec(Section):
    """One transformer block's own settings (``model.blocks``); empty fields take the model's."""

    n_head: int | None = Field(
        None, ge=1, le=1024, description="Query heads; head size = width / n_head; empty = model's"
    )
    n_kv_head: int | None = Field(
        None, ge=1, le=1024, description="Key/value heads (divides n_head); empty = n_head"
    )
    window: int | None = Field(
        None,
        ge=0,
        description="Attention window in tokens, 0 = full causal; empty = window_pattern",
    )
    mlp: MLPKind = Field("relu2", description="relu2: ReLU² (nanochat) | swiglu: SiLU-gated")
    mlp_hidden: int | None = Field(
        None,
        ge=8,
        le=1_048_576,
        description="MLP hidden width; empty = 4·width (relu2), "
        "8/3·width rounded up to 64 (swiglu)",
    )
    value_embed: bool | None = Field(
        None, description="Gated value embedding in this block; empty = the recipe's alternation"
    )


class ModelConfig(Section):
    """nanochat GPT: depth sets width (model_dim = depth * aspect_ratio) unless ``width`` is set."""

    depth: int = Field(
        2, ge=1, le=128, description="Transformer layers; width = depth × aspect_ratio"
    )
    aspect_ratio: int = Field(
        64, ge=8, le=512, description="model_dim per layer of depth (nanochat: 64)"
    )
    head_dim: int = Field(128, ge=8, le=512, description="Attention head size (nanochat: 128)")
    n_kv_head: int | None = Field(
        None, ge=1, description="Key/value heads for GQA/MQA; empty = n_head"
    )
    sequence_len: int = Field(2048, ge=8, le=131072, description="Context length in tokens")
    vocab_size: int = Field(
        65536, ge=260, le=1_048_576, description="Tokenizer vocabulary (incl. specials)"
    )
    softcap: float = Field(
        15.0, ge=0.0, le=1000.0, description="Logit soft-cap c·tanh(x/c); 0 disables"
    )
    recipe: Recipe = Field(
        "nanochat-2025",
        description="nanochat-2025 (what HF 'nanochat' loads) or nanochat-2026 (today's speedrun); "
        "sets every empty switch below and in optim",
    )
    # Recipe switches: empty (None) = the recipe's value (config/recipes.py); set one to ablate it.
    rope_base: float | None = Field(
        None, ge=1.0, le=1e9, description="Rotary base frequency; empty = recipe (10000 | 100000)"
    )
    qk_scale: float | None = Field(
        None, gt=0, description="Multiply q and k after QK-norm; empty = recipe (1.0 | 1.2)"
    )
    value_embeds: bool | None = Field(
        None, description="Gated value embeddings on alternating layers; empty = recipe"
    )
    residual_scalars: bool | None = Field(
        None, description="Per-layer learned residual and x0 (embedding) scalars; empty = recipe"
    )
    smear: bool | None = Field(
        None, description="Gated mix of the previous token's embedding; empty = recipe"
    )
    backout: bool | None = Field(
        None, description="Subtract the mid-layer residual before the head; empty = recipe"
    )
    window_pattern: str | None = Field(
        None,
        pattern=r"^[SLsl]+$",
        description="Attention windows tiled over layers (L full, S short; last layer L); "
        "empty = recipe (L | SSSL)",
    )
    short_window: int = Field(
        0, ge=0, description="S-layer window in tokens; 0 = nanochat's ceil(seq/4 to 128)"
    )
    init: Recipe | None = Field(None, description="Weight init of that recipe; empty = recipe")
    vocab_multiple: int | None = Field(
        None, ge=1, le=1024, description="Pad the embedding/head rows to a multiple; empty = recipe"
    )
    loss_chunk: int = Field(
        2048, ge=0, description="Tokens per cross-entropy chunk (never full [B,T,V]); 0 = unchunked"
    )
    remat: bool = Field(False, description="Recompute each block in backward (saves activations)")
    scan_layers: bool = Field(
        False,
        description="Run runs of identical blocks as one jax.lax.scan (compile time flat in depth)",
    )
    width: int | None = Field(
        None, ge=8, le=65536, description="model_dim directly; empty = depth × aspect_ratio"
    )
    blocks: list[BlockSpec] | None = Field(
        None,
        description="Per-block overrides, one per layer (the architecture designer writes them); "
        "empty = depth identical blocks",
    )

    @property
    def model_dim(self) -> int:
        return self.width or self.depth * self.aspect_ratio

    @property
    def n_head(self) -> int:
        return max(1, self.model_dim // self.head_dim)

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def padded_vocab(self) -> int:
        """Rows of the embedding and lm head: ``vocab_size`` rounded up to ``vocab_multiple``."""
        m = self.resolved().vocab_multiple or 1
        return -(-self.vocab_size // m) * m

    def resolved(self) -> ModelConfig:
        """A copy with every empty recipe switch filled in from ``recipe``."""
        from nanochat_tui.config.recipes import resolve_section

        return resolve_section(self, self.recipe)

    def window_sizes(self) -> list[int | None]:
        """Left attention window per layer (None = full causal), nanochat's tiling: last layer full."""
        m = self.resolved()
        short = self.short_window or -(-self.sequence_len // 4 // 128) * 128
        pattern = (m.window_pattern or "L").upper()
        sizes = [None if pattern[i % len(pattern)] == "L" else short for i in range(self.depth)]
        sizes[-1] = None
        return [None if w is not None and w >= self.sequence_len else w for w in sizes]

    @property
    def uniform(self) -> bool:
        """True when every block is the default nanochat block (no ``blocks``, no width override)."""
        return self.blocks is None

    def block_settings(self) -> list[BlockSettings]:
        """Each layer's resolved attention/MLP settings (identical blocks when ``blocks`` is empty)."""
        d = self.model_dim
        windows = self.window_sizes()
        ve = self.resolved().value_embeds
        out = []
        for i in range(self.depth):
            spec = self.blocks[i] if self.blocks else BlockSpec()
            heads = spec.n_head or self.n_head
            hd = d // spec.n_head if spec.n_head else self.head_dim
            kv = spec.n_kv_head or (self.kv_heads if spec.n_head is None else heads)
            window = windows[i]
            if spec.window is not None:
                window = (
                    None if spec.window == 0 or spec.window >= self.sequence_len else spec.window
                )
            default_hidden = 4 * d if spec.mlp == "relu2" else -(-8 * d // 3 // 64) * 64
            has_ve = bool(ve) and i % 2 == (self.depth - 1) % 2
            out.append(
                BlockSettings(
                    heads,
                    kv,
                    hd,
                    window,
                    spec.mlp,
                    spec.mlp_hidden or default_hidden,
                    has_ve if spec.value_embed is None else spec.value_embed,
                )
            )
        return out

    @model_validator(mode="after")
    def _check_heads(self) -> ModelConfig:
        if self.model_dim % self.head_dim:
            where = (
                f"width {self.width}"
                if self.width
                else f"depth {self.depth} × aspect_ratio {self.aspect_ratio}"
            )
            raise ValueError(
                f"model_dim {self.model_dim} ({where}) "
                f"is not a multiple of head_dim {self.head_dim}; pick head_dim dividing it"
            )
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_head {self.n_head} is not a multiple of n_kv_head {self.kv_heads}")
        if self.blocks is not None:
            self._check_blocks()
        return self

    def _check_blocks(self) -> None:
        if len(self.blocks) != self.depth:
            raise ValueError(
                f"blocks lists {len(self.blocks)} blocks but depth is {self.depth}; "
                "give one entry per layer (or set depth to match)"
            )
        d = self.model_dim
        for i, spec in enumerate(self.blocks):
            heads = spec.n_head or self.n_head
            if spec.n_head and (d % spec.n_head or (d // spec.n_head) % 2):
                raise ValueError(
                    f"blocks[{i}].n_head {spec.n_head} must divide width {d} into an even head "
                    "size; pick a divisor"
                )
            kv = spec.n_kv_head or (heads if spec.n_head else self.kv_heads)
            if heads % kv:
                raise ValueError(
                    f"blocks[{i}].n_kv_head {kv} does not divide n_head {heads}; pick a divisor"
                )


@dataclass(frozen=True)
class BlockSettings:
    """One layer as the engine builds it (``ModelConfig.block_settings()``)."""

    n_head: int
    n_kv_head: int
    head_dim: int
    window: int | None
    mlp: str
    mlp_hidden: int
    value_embed: bool


class DataConfig(Section):
    """Where training text comes from and how much of it to use."""

    source: str = Field(
        "embedded",
        description="'embedded' (Python stdlib docs+source, no download) or a path to "
        "parquet shards / .txt/.md folder / .jsonl",
    )
    format: Literal["auto", "parquet", "text", "jsonl"] = Field(
        "auto", description="Reader for source"
    )
    text_field: str = Field("text", description="Column (parquet) or key (jsonl) holding the text")
    max_chars: int = Field(0, ge=0, description="Use at most this many characters (0 = all)")
    val_fraction: float = Field(
        0.05, gt=0.0, lt=0.5, description="Held-out fraction for validation"
    )
    tokenizer_chars: int = Field(
        2_000_000, ge=10_000, description="Characters used to train the BPE tokenizer"
    )
    tokenizer: str | None = Field(None, description="Path to an existing tokenizer.json to reuse")
    packing: Literal["windows", "bestfit"] = Field(
        "windows",
        description="Pretraining rows: 'windows' = fixed cuts of the token stream; 'bestfit' = "
        "every row starts at a document's BOS, documents packed best-fit, cropped to fill",
    )
    pack_buffer: int = Field(
        1000, ge=1, le=1_000_000, description="Documents buffered for best-fit packing"
    )


class OptimConfig(Section):
    """Muon for block matrices, AdamW for embeddings/head/scalars (nanochat's split).

    Empty (None) fields take the value of the run's ``model.recipe`` (config/recipes.py).
    """

    _recipe: str = PrivateAttr("nanochat-2025")  # set by Config from model.recipe

    matrix_lr: float = Field(
        0.02, gt=0, le=10, description="Muon learning rate for 2-D block weights"
    )
    embedding_lr: float | None = Field(
        None, gt=0, le=100, description="AdamW lr for the token embedding; empty = recipe"
    )
    unembedding_lr: float | None = Field(
        None, gt=0, le=10, description="AdamW lr for the lm head; empty = recipe"
    )
    scalar_lr: float = Field(
        0.5, gt=0, le=100, description="AdamW lr for the per-layer scalars (x0; resid × 0.01)"
    )
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay")
    adam_beta1: float = Field(0.8, ge=0, lt=1, description="AdamW β1")
    adam_beta2: float = Field(0.95, ge=0, lt=1, description="AdamW β2")
    adamw_per_group: bool | None = Field(
        None,
        description="nanochat's per-group AdamW betas/decay (ignores the 3 above); empty = recipe",
    )
    muon_momentum: float | None = Field(
        None, ge=0, lt=1, description="Muon momentum after warmup; empty = recipe (0.95 | 0.97)"
    )
    muon_momentum_start: float = Field(
        0.85, ge=0, lt=1, description="Muon momentum at step 0, warmed up to muon_momentum"
    )
    muon_momentum_warmup_steps: int | None = Field(
        None, ge=0, description="Steps of Muon momentum warmup (0 disables); empty = recipe"
    )
    muon_momentum_final: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Muon momentum reached at the end of the lr warmdown; "
        "empty = recipe (no change | 0.90)",
    )
    muon_polar_express: bool | None = Field(
        None, description="Polar Express coefficients instead of Newton–Schulz; empty = recipe"
    )
    muon_normuon: bool | None = Field(
        None, description="NorMuon per-neuron variance reduction (β2 0.9); empty = recipe"
    )
    muon_renorm: bool | None = Field(
        None, description="MuonEq row equilibration + Muon+ norm snap; empty = recipe"
    )
    muon_weight_decay: float | None = Field(
        None, ge=0, le=10, description="Muon decoupled weight decay, cosine to 0; empty = recipe"
    )
    muon_wd_scaling: bool | None = Field(
        None,
        description="Scale muon_weight_decay by √(B/2^19)·(d12's matrices / this model's), "
        "as nanochat's base_train; empty = recipe",
    )
    muon_cautious_wd: bool | None = Field(
        None, description="Decay only where update and weight agree in sign; empty = recipe"
    )
    batch_lr_scale: bool | None = Field(
        None, description="Scale every lr by √(total_batch_size / 2^19); empty = recipe"
    )
    warmup_ratio: float = Field(0.0, ge=0, le=1, description="Fraction of steps of linear warmup")
    warmup_steps: int | None = Field(
        None, ge=0, description="Extra steps of linear warmup; empty = recipe (0 | 40)"
    )
    warmdown_ratio: float | None = Field(
        None, ge=0, le=1, description="Fraction of steps of linear warmdown; empty = recipe"
    )
    final_lr_frac: float | None = Field(
        None, ge=0, le=1, description="LR at the end, as a fraction of peak; empty = recipe"
    )
    grad_clip: float | None = Field(
        None, ge=0, le=1e6, description="Global grad-norm clip (0 disables); empty = recipe (1 | 0)"
    )
    lr_multiplier: float = Field(
        1.0, gt=0, le=100, description="Live multiplier on every lr (patchable)"
    )

    def resolved(self) -> OptimConfig:
        """A copy with every empty field filled in from the run's recipe."""
        from nanochat_tui.config.recipes import resolve_section

        return resolve_section(self, self._recipe)


def check_stage(stage: str) -> str:
    """``stage`` when a task is registered for it (the built-in table or a plugin's
    ``add_stage``), else a ValueError naming the registered ones."""
    from nanochat_tui.plugin_host import get_registry

    known = get_registry().stages
    if stage not in known:
        raise ValueError(f"unknown stage {stage!r}; use one of {', '.join(known)}")
    return stage


class TrainConfig(Section):
    stage: str = Field(
        "pretrain",
        description="Training stage (task): pretrain, sft (chat fine-tuning, see run.init_from), "
        "preference optimization dpo | orpo | simpo (see pref), or one a plugin registers",
    )
    device_batch_size: int = Field(32, ge=1, le=4096, description="Sequences per device step")
    total_batch_size: int = Field(
        524288, ge=8, description="Tokens per optimizer step (gradient accumulation fills it)"
    )
    num_iterations: int = Field(
        -1, ge=-1, description="Optimizer steps; -1 = from param:data ratio"
    )
    target_param_data_ratio: float = Field(
        20.0, gt=0, le=1e6, description="Chinchilla tokens per parameter when num_iterations = -1"
    )
    eval_every: int = Field(250, ge=0, description="Validate every N steps (0 = only at the end)")
    eval_tokens: int = Field(10 * 524288, ge=1, description="Validation tokens per evaluation")
    sample_every: int = Field(500, ge=0, description="Print samples every N steps (0 = never)")
    save_every: int = Field(
        1000, ge=0, description="Checkpoint every N steps (0 = only at the end)"
    )
    keep_checkpoints: int = Field(3, ge=1, le=1000, description="Checkpoints kept on disk")
    seed: int = Field(42, ge=0, description="Seed for init and data order")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Compute dtype: auto = bf16 on GPU/TPU, fp32 on CPU"
    )
    on_divergence: Literal["stop", "warn", "off"] = Field(
        "stop", description="When the loss diverges (see divergence_*): stop, warn, or off"
    )
    divergence_factor: float = Field(
        2.0, gt=1, le=1e6, description="Diverged: loss above this × its running minimum ..."
    )
    divergence_steps: int = Field(
        20, ge=1, le=100_000, description="... for this many consecutive steps"
    )

    _registered_stage = field_validator("stage")(check_stage)


class PrefConfig(Section):
    """Preference optimization (train.stage dpo | orpo | simpo) on chosen/rejected pairs."""

    beta: float = Field(
        0.1, gt=0, le=100, description="β: scale of the implicit reward (dpo, simpo)"
    )
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = Field(
        "sigmoid", description="DPO loss: sigmoid (DPO), ipo, hinge (SLiC) or robust (rDPO)"
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="Probability a pair's labels are flipped (sigmoid, robust)"
    )
    simpo_gamma: float = Field(0.5, ge=0, le=100, description="SimPO target reward margin γ")
    orpo_lambda: float = Field(
        0.1, gt=0, le=100, description="ORPO weight λ of the odds-ratio term beside the SFT loss"
    )
    reference: Literal["live", "precomputed"] = Field(
        "precomputed",
        description="DPO reference (run.init_from): live = a frozen second copy of the weights; "
        "precomputed = its log-probs, computed once and written beside the dataset",
    )
    reference_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="Weights of the live reference (bfloat16 halves its memory)"
    )


class MeshConfig(Section):
    """Device layout: a ``data`` × ``fsdp`` mesh (jax_engine/sharding.py). The batch is split over
    both axes; parameters and optimizer state are sharded over ``fsdp``. -1 = all remaining devices."""

    data: int = Field(
        -1, ge=-1, le=65536, description="Data-parallel replicas; -1 = all remaining devices"
    )
    fsdp: int = Field(
        1, ge=-1, le=65536, description="Devices that shard parameters/optimizer; -1 = remaining"
    )

    @model_validator(mode="after")
    def _check_axes(self) -> MeshConfig:
        if 0 in (self.data, self.fsdp):
            raise ValueError("mesh.data and mesh.fsdp must be ≥ 1, or -1 for all remaining devices")
        if self.data == -1 and self.fsdp == -1:
            raise ValueError(
                "only one of mesh.data and mesh.fsdp may be -1 (all remaining devices)"
            )
        return self


class RunConfig(Section):
    name: str | None = Field(None, description="Run name: run directory and W&B run name")
    runs_dir: str | None = Field(
        None, description="Parent folder of run directories (default: user data)"
    )
    init_from: str | None = Field(
        None, description="Checkpoint or run dir whose weights start the run"
    )


class AlignConfig(Section):
    """Which project's SOUL and agent interface an alignment run uses (docs/alignment.md)."""

    project: str = Field(
        "default",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Project (user data projects/) whose SOUL and tools alignment stages use",
    )
    soul_version: int | None = Field(
        None,
        ge=1,
        description="SOUL version; empty = the project's latest, recorded when an sft run starts",
    )


class WandbConfig(Section):
    enabled: bool = Field(False, description="Log to Weights & Biases")
    project: str = Field("nanochat-tui", description="W&B project")
    entity: str | None = Field(None, description="W&B entity (team or user)")
    mode: Literal["auto", "online", "offline"] = Field(
        "auto", description="auto = online with a key and network, else offline"
    )


class OtelConfig(Section):
    enabled: bool = Field(
        False, description="Export spans/metrics (or set OTEL_EXPORTER_OTLP_ENDPOINT)"
    )
    endpoint: str | None = Field(None, description="OTLP/HTTP endpoint; empty = env or console")
    service_name: str = Field("nanochat-tui", description="OpenTelemetry service.name")


class TelemetryConfig(Section):
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    otel: OtelConfig = Field(default_factory=OtelConfig)


class PanelSpec(Section):
    """One panel on a live screen (see panels/)."""

    type: str = Field(..., description="Registered panel type, e.g. progress, loss, validation")
    source: str | None = Field(None, description="Event field or metric the panel shows")
    title: str | None = None
    thresholds: dict[str, float] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    width: int = Field(1, ge=1, le=4, description="Grid columns spanned")
    height: int = Field(1, ge=1, le=4, description="Grid rows spanned")


class ScreenSpec(Section):
    name: str
    refresh_ms: int = Field(500, ge=50, le=60_000)
    columns: int = Field(2, ge=1, le=6)
    panels: list[PanelSpec] = Field(default_factory=list)


class UIConfig(Section):
    screens: list[ScreenSpec] = Field(default_factory=list)


class PipelineStep(Section):
    """One step of a prefab's pipeline: a stage run with its own overrides (docs/runs.md)."""

    stage: str = Field(..., description="Training stage of this step (a registered stage)")
    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]{1,40}$", description="Run-name suffix; empty = the stage"
    )
    set: dict[str, Any] = Field(
        default_factory=dict,
        description="Dotted overrides for this step, e.g. train.num_iterations",
    )

    _registered_stage = field_validator("stage")(check_stage)


class Config(Section):
    """A whole run: what a prefab YAML describes."""

    name: str = Field("custom", description="Prefab name")
    description: str = Field("", description="What this prefab is for")
    hardware: str = Field("", description="The hardware it expects")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    mesh: MeshConfig = Field(default_factory=MeshConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    align: AlignConfig = Field(default_factory=AlignConfig)
    pref: PrefConfig = Field(default_factory=PrefConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    ui: UIConfig = Field(default_factory=UIConfig)
    plugins: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-plugin settings, validated by each plugin"
    )
    pipeline: list[PipelineStep] = Field(
        default_factory=list,
        description="Steps run in order, each from the previous one's weights (empty = one run)",
    )

    @model_validator(mode="after")
    def _bind_recipe(self) -> Config:
        self.optim._recipe = self.model.recipe
        return self

    @model_validator(mode="after")
    def _check_batch(self) -> Config:
        per_step = self.train.device_batch_size * self.model.sequence_len
        if self.train.total_batch_size % per_step:
            raise ValueError(
                f"train.total_batch_size {self.train.total_batch_size} must be a multiple of "
                f"device_batch_size × sequence_len = {per_step}"
            )
        return self

    @property
    def grad_accum_steps(self) -> int:
        return self.train.total_batch_size // (
            self.train.device_batch_size * self.model.sequence_len
        )


# Fields a running job accepts through the control inbox ("patch"). Each is re-validated.
PATCHABLE_FIELDS: tuple[str, ...] = (
    "optim.lr_multiplier",
    "optim.grad_clip",
    "train.eval_every",
    "train.sample_every",
    "train.save_every",
    "train.num_iterations",
)
