"""Closed-form size, FLOPs and wall-time estimates for a config (no JAX needed)."""

from __future__ import annotations

from dataclasses import dataclass

from nanochat_tui.config.machine import CpuProfile, cpu_profile
from nanochat_tui.config.schema import BlockSettings, Config, ModelConfig
from nanochat_tui.errors import UserError

# Peak dense bf16 FLOP/s. This machine's CPU is not listed: its row (``hardware()``) uses the usable
# core count, the memory and a measured fp32 matmul rate (config/machine.py).
ACCELERATORS: dict[str, tuple[float, float]] = {
    # name: (peak FLOP/s, $ per hour)
    "1× H100": (989e12, 2.50),
    "8× H100": (8 * 989e12, 20.00),
    "TPU v5e-8": (8 * 197e12, 9.60),
    "TPU v6e-8": (8 * 918e12, 21.60),
}
# name: (memory of ONE device in bytes, platform). What must fit is one device's share: the model
# and its optimizer (divided by mesh.fsdp) and one micro-batch.
DEVICE_MEMORY: dict[str, tuple[float, str]] = {
    "1× H100": (80 * 2**30, "gpu"),
    "8× H100": (80 * 2**30, "gpu"),
    "TPU v5e-8": (16 * 2**30, "tpu"),
    "TPU v6e-8": (32 * 2**30, "tpu"),
}
# Activation bytes kept for backward, per token per layer, in units of the compute dtype:
# ACT_PER_DIM × model_dim, plus ACT_PER_SCORE × n_head × (attended keys) in fp32 where attention
# materialises its scores (XLA; not cuDNN's fused kernel). Fitted to XLA's compiled memory
# analysis on CPU (tests/test_estimates.py checks the agreement).
ACT_PER_DIM = 17
ACT_PER_SCORE = 1
# The share of the measured matmul rate a training step reaches on a CPU, and its range: measured
# on the 2-core dev VM (docs/model.md), tiny ran 11,650 tok/s = 7.3e10 FLOP/s against a 1024² matmul
# rate of 0.11–0.2 TFLOP/s (37–67%), d4 54–59 GFLOP/s against 0.10–0.12 (45–59%). The estimate's
# range spans this and the measurement's own slowest..fastest timed matmul.
CPU_MFU = 0.45
CPU_MFU_RANGE = (0.35, 0.6)
# name: devices the accelerator line has (the mesh spans all of them).
DEVICE_COUNT: dict[str, int] = {
    "1× H100": 1,
    "8× H100": 8,
    "TPU v5e-8": 8,
    "TPU v6e-8": 8,
}
DEFAULT_MFU = 0.45


@dataclass(frozen=True)
class Hardware:
    """One row of the estimates: peak FLOP/s, $ per hour, one device's memory, platform, MFU."""

    name: str
    peak: float
    price: float
    memory: float
    platform: str
    mfu: float
    devices: int = 1  # the mesh spans all of them
    # the slowest and fastest FLOP/s a step may reach (peak × MFU); 0: just peak × mfu
    slowest: float = 0.0
    fastest: float = 0.0


def hardware(cpu: CpuProfile | None = None) -> list[Hardware]:
    """This machine's CPU first (``cpu``, by default ``cpu_profile()``), then the accelerators."""
    cpu = cpu or cpu_profile()
    slowest, fastest = cpu.flops_low * CPU_MFU_RANGE[0], cpu.flops_high * CPU_MFU_RANGE[1]
    rows = [
        Hardware(
            cpu.name, cpu.flops, cpu.price_per_hour, cpu.memory, "cpu", CPU_MFU, 1, slowest, fastest
        )
    ]
    for name, (peak, price) in ACCELERATORS.items():
        capacity, platform = DEVICE_MEMORY[name]
        rows.append(
            Hardware(name, peak, price, capacity, platform, DEFAULT_MFU, DEVICE_COUNT[name])
        )
    return rows


def value_embed_layers(m: ModelConfig) -> int:
    """Layers with a value embedding (nanochat: alternating, the last always; 0 when off)."""
    return sum(1 for b in m.block_settings() if b.value_embed)


def block_params(m: ModelConfig, b: BlockSettings) -> int:
    """Matrix parameters of one block: q/k/v/o, the MLP, and the value-embedding gate."""
    d, q, kv = m.model_dim, b.n_head * b.head_dim, b.n_kv_head * b.head_dim
    attn = d * q + 2 * d * kv + q * d
    mlp = (3 if b.mlp == "swiglu" else 2) * d * b.mlp_hidden
    return attn + mlp + (12 * b.n_kv_head if b.value_embed else 0)


def param_counts(m: ModelConfig) -> dict[str, int]:
    """Parameters by group (vocabulary rows padded as the model pads them)."""
    r = m.resolved()
    d = m.model_dim
    settings = m.block_settings()
    scalars = (2 * m.depth if r.residual_scalars else 0) + (1 if r.backout else 0)
    scalars += min(24, d) + 1 if r.smear else 0
    return {
        "embedding": m.padded_vocab * d,
        "value_embeds": sum(
            m.padded_vocab * b.n_kv_head * b.head_dim for b in settings if b.value_embed
        ),
        "unembedding": m.padded_vocab * d,
        "blocks": sum(block_params(m, b) for b in settings),
        "scalars": scalars,
    }


def attended_keys(m: ModelConfig) -> list[int]:
    """Keys each layer's last query attends to (its window, or the whole sequence)."""
    seq = m.sequence_len
    return [seq if b.window is None else min(b.window, seq) for b in m.block_settings()]


def num_params(m: ModelConfig) -> int:
    return sum(param_counts(m).values())


def flops_per_token(m: ModelConfig) -> float:
    """nanochat's estimate: 6·(matmul params) + 12·d·(attended keys) per layer, forward+backward.

    Matmul params exclude the lookups (embedding, value embeddings) and the scalars; a sliding-window
    layer attends to at most ``window`` keys.
    """
    c = param_counts(m)
    n = c["unembedding"] + c["blocks"] + (min(24, m.model_dim) if m.resolved().smear else 0)
    attn = sum(
        12 * b.n_head * b.head_dim * k
        for b, k in zip(m.block_settings(), attended_keys(m), strict=True)
    )
    return 6 * n + attn


def num_iterations(config: Config) -> int:
    if config.train.num_iterations > 0:
        return config.train.num_iterations
    tokens = config.train.target_param_data_ratio * num_params(config.model)
    return max(1, round(tokens / config.train.total_batch_size))


def total_tokens(config: Config) -> int:
    return num_iterations(config) * config.train.total_batch_size


@dataclass(frozen=True)
class MeshLayout:
    """How a step spreads over ``data × fsdp`` devices (``mesh.*`` resolved for a device count).

    Each device runs ``device_batch`` sequences per micro-batch; one micro-batch over the mesh is
    ``global_batch`` sequences, and ``accum`` micro-batches make the ``total_batch_size`` tokens of
    one optimizer step (nanochat's ``grad_accum_steps``, which shrinks as devices are added).
    """

    data: int
    fsdp: int
    device_batch: int
    accum: int
    sequence_len: int

    @property
    def devices(self) -> int:
        return self.data * self.fsdp

    @property
    def global_batch(self) -> int:
        return self.device_batch * self.devices

    @property
    def label(self) -> str:
        return f"{self.data}×{self.fsdp}"


def mesh_layout(config: Config, device_count: int) -> MeshLayout:
    """Resolve ``mesh.data``/``mesh.fsdp`` (-1 = all remaining devices) for ``device_count``
    devices; raises UserError naming the fields when the layout does not divide."""
    data, fsdp = config.mesh.data, config.mesh.fsdp
    fix_mesh = f"set mesh.data × mesh.fsdp to a divisor of {device_count} (e.g. mesh.data=-1)"
    if -1 in (data, fsdp):
        known = fsdp if data == -1 else data
        name = "mesh.fsdp" if data == -1 else "mesh.data"
        if device_count % known:
            raise UserError(f"{name}={known} does not divide the {device_count} devices", fix_mesh)
        data, fsdp = (
            (device_count // known, known) if data == -1 else (known, device_count // known)
        )
    elif device_count % (data * fsdp):
        raise UserError(
            f"mesh.data × mesh.fsdp = {data}×{fsdp} = {data * fsdp} does not divide the "
            f"{device_count} devices",
            fix_mesh,
        )
    seq, bsz = config.model.sequence_len, config.train.device_batch_size
    per_micro = bsz * seq * data * fsdp
    total = config.train.total_batch_size
    if total % per_micro:
        raise UserError(
            f"train.total_batch_size {total} is not a multiple of train.device_batch_size × "
            f"model.sequence_len × devices (mesh.data × mesh.fsdp = {data}×{fsdp}) = "
            f"{bsz}×{seq}×{data * fsdp} = {per_micro}",
            f"set train.total_batch_size to a multiple of {per_micro}, or lower "
            "train.device_batch_size or the mesh size",
        )
    return MeshLayout(data, fsdp, bsz, total // per_micro, seq)


@dataclass(frozen=True)
class Memory:
    """Bytes one device needs for a training step, by part."""

    params: int
    grads: int
    optimizer: int
    activations: int
    logits: int
    reference: int = 0  # DPO's live reference weights (pref.reference=live)

    @property
    def total(self) -> int:
        return (
            self.params + self.grads + self.optimizer + self.activations + self.logits
            + self.reference
        )  # fmt: skip


PREFERENCE_STAGES = ("dpo", "orpo", "simpo")


def reference_bytes(config: Config) -> int:
    """What DPO's reference costs one device: a frozen copy of the weights when live (in
    ``pref.reference_dtype``); precomputed log-probs are two floats per pair, on the host."""
    if config.train.stage != "dpo" or config.pref.reference != "live":
        return 0
    return num_params(config.model) * (2 if config.pref.reference_dtype == "bfloat16" else 4)


def optimizer_bytes(m: ModelConfig) -> int:
    """fp32 optimizer state: AdamW (2 moments) for embeddings/head/scalars, Muon momentum (+ NorMuon
    second moments) for block matrices."""
    c = param_counts(m)
    adam = c["embedding"] + c["value_embeds"] + c["unembedding"] + c["scalars"]
    return 4 * (2 * adam + c["blocks"])


def memory_estimate(
    config: Config, platform: str = "cpu", layout: MeshLayout | None = None
) -> Memory:
    """What one device holds during a training step on ``platform`` (cpu | gpu | tpu): with a
    ``layout``, parameters, gradients and optimizer state are split over its ``fsdp`` devices
    and gradients are double-buffered only when it accumulates."""
    m = config.model
    n = num_params(m)
    act_bytes = 4 if platform == "cpu" or config.train.dtype == "float32" else 2
    tokens = config.train.device_batch_size * m.sequence_len
    if config.train.stage in PREFERENCE_STAGES:
        tokens *= 2  # a row is a pair: chosen and rejected go through the model together
    # Per layer ACT_PER_DIM·model_dim (scaled with the block's MLP width against ReLU²'s 4·width),
    # plus the fp32 attention scores, fitted as depth × Σ_layers heads·attended keys (none with
    # cuDNN's fused kernel; the blocked CPU path in attention.py skips the masked half). model.remat
    # is not credited: XLA:CPU's analysis shows no saving from it, and we have not measured one on
    # an accelerator yet.
    settings = m.block_settings()
    scores = sum(b.n_head * k for b, k in zip(settings, attended_keys(m), strict=True))
    scores = 0 if platform == "gpu" else scores // 2 if platform == "cpu" else scores
    dims = sum(
        (1 + b.mlp_hidden * (1.5 if b.mlp == "swiglu" else 1) / (4 * m.model_dim)) / 2
        for b in settings
    )
    per_token = ACT_PER_DIM * m.model_dim * act_bytes * dims + ACT_PER_SCORE * scores * 4 * m.depth
    activations = int(tokens * per_token)
    chunk = tokens if m.loss_chunk <= 0 else min(tokens, m.loss_chunk)
    accum = config.grad_accum_steps if layout is None else layout.accum
    shards = 1 if layout is None else layout.fsdp
    grads = 4 * n * (2 if accum > 1 else 1) // shards
    if config.train.stage in PREFERENCE_STAGES:
        chunk = m.sequence_len  # preference losses run the head one sequence at a time
    logits = 2 * chunk * m.padded_vocab * 4
    return Memory(
        4 * n // shards,
        grads,
        optimizer_bytes(m) // shards,
        activations,
        logits,
        reference_bytes(config),
    )


@dataclass(frozen=True)
class Estimate:
    accelerator: str
    hours: float
    cost: float
    mfu: float
    memory: int = 0  # bytes one device needs (memory_estimate)
    device_memory: int = 0  # bytes one device has
    layout: MeshLayout | None = None  # None: mesh.* does not divide this accelerator
    layout_error: str = ""
    hours_low: float = 0.0  # the range of ``hours`` (the same value where only an MFU is assumed)
    hours_high: float = 0.0

    @property
    def fits(self) -> bool:
        return self.memory <= self.device_memory


def compatibility_matrix(config: Config, cpu: CpuProfile | None = None) -> list[Estimate]:
    """One Estimate per ``hardware(cpu)`` row; a CPU whose rate is still being measured
    (``cpu.pending``) gets ``inf`` hours."""
    flops = flops_per_token(config.model) * total_tokens(config)
    rows = []
    for hw in hardware(cpu):
        rate = hw.peak * hw.mfu
        hours = flops / rate / 3600 if rate > 0 else float("inf")
        low = flops / hw.fastest / 3600 if hw.fastest > 0 else hours
        high = flops / hw.slowest / 3600 if hw.slowest > 0 else hours
        try:
            layout, error = mesh_layout(config, hw.devices), ""
        except UserError as err:
            layout, error = None, err.message
        need = memory_estimate(config, hw.platform, layout).total
        rows.append(
            Estimate(
                hw.name,
                hours,
                hours * hw.price,
                hw.mfu,
                need,
                int(hw.memory),
                layout,
                error,
                hours_low=low,
                hours_high=high,
            )
        )
    return rows
