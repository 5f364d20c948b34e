"""Where arrays live on many devices: a ``data × fsdp`` mesh, a sharding per leaf, batches per process.

- The mesh has the axes ``("data", "fsdp")``, sized by ``mesh.data`` / ``mesh.fsdp``
  (``config.estimates.mesh_layout`` resolves -1 = all remaining devices and refuses a layout that
  does not divide the devices or the batch). It spans the first ``data × fsdp`` devices
  (all of them on several hosts).
- Parameters and optimizer state: an array of rank ≥ 2 is split over ``fsdp`` along its first
  axis that divides (embedding rows, kernel inputs); anything else is replicated. The rule reads
  only the shape, so a parameter, its gradient, its Adam moments and its Muon momentum share one
  sharding, and GSPMD turns the gradient reduction into a reduce-scatter onto it. They are built
  in place (``build_sharded``: the initialisers run under ``jit`` with these shardings as its
  outputs), so no device ever holds a whole fsdp-split array; the values are the ones an
  unsharded initialisation with the same seed gives.
- Batches ``[M, B, ...]``: ``B`` split over ``data × fsdp`` (every device gets ``device_batch``
  rows). Every process walks the same deterministic order (so data positions and resume stay
  exact) but reads only the rows its own devices hold (``local_rows``, the data loader's
  ``rows``); ``put_local_batch`` assembles the global array from each process's share with
  ``jax.make_array_from_process_local_data``. Tasks that build whole batches hand them to
  ``put_batch``, which keeps this process's rows.
- On one device all of this is a one-device mesh: the same arrays as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from nanochat_tui.config.estimates import MeshLayout, mesh_layout
from nanochat_tui.errors import UserError

AXES = ("data", "fsdp")


def make_mesh(config: Any, devices: list | None = None) -> tuple[Mesh, MeshLayout]:
    """The run's mesh over ``devices`` (default: every device JAX sees) and its layout."""
    devices = list(jax.devices() if devices is None else devices)
    layout = mesh_layout(config, len(devices))
    if jax.process_count() > 1 and layout.devices != len(devices):
        raise UserError(
            f"mesh.data × mesh.fsdp = {layout.label} uses {layout.devices} of the "
            f"{len(devices)} devices of this {jax.process_count()}-process run",
            "on several hosts the mesh must span every device: set mesh.data=-1 or mesh.fsdp=-1",
        )
    mesh = jax.make_mesh(
        (layout.data, layout.fsdp),
        AXES,
        axis_types=(AxisType.Auto, AxisType.Auto),
        devices=devices[: layout.devices],
    )
    return mesh, layout


def param_spec(shape: tuple[int, ...], fsdp: int) -> P:
    """``fsdp`` on the first axis of a rank ≥ 2 array that it divides; replicated otherwise."""
    if fsdp > 1 and len(shape) >= 2:
        for axis, size in enumerate(shape):
            if size % fsdp == 0 and size >= fsdp:
                return P(*([None] * axis + ["fsdp"]))
    return P()


@dataclass(frozen=True)
class Placement:
    """A run's mesh and layout, and where each kind of array goes on it (hashable: the jitted
    step is cached per placement)."""

    mesh: Mesh
    layout: MeshLayout

    @property
    def size(self) -> int:
        return self.layout.devices

    def sharding(self, shape: tuple[int, ...]) -> NamedSharding:
        return NamedSharding(self.mesh, param_spec(tuple(shape), self.layout.fsdp))

    @property
    def batch_sharding(self) -> NamedSharding:
        """For ``[M, B, ...]`` micro-batched leaves: ``B`` over every device."""
        return NamedSharding(self.mesh, P(None, AXES))

    def build_sharded(self, make: Callable[[], Any]) -> Any:
        """What ``make()`` returns (nnx modules, an optimizer), built directly on the mesh: its
        shapes come from ``nnx.eval_shape``, then one jit runs the initialisers with each
        array's sharding as its output sharding."""
        from flax import nnx

        graphdef, shapes = nnx.split(nnx.eval_shape(make))
        shardings = jax.tree.map(lambda a: self.sharding(a.shape), shapes)

        @partial(jax.jit, out_shardings=shardings)
        def build() -> Any:
            return nnx.split(make())[1]

        return nnx.merge(graphdef, build())

    def place(self, tree: Any) -> Any:
        """``tree``'s arrays moved to their shardings (parameters / optimizer state)."""
        return jax.tree.map(lambda a: jax.device_put(a, self.sharding(np.shape(a))), tree)

    def constrain(self, tree: Any) -> Any:
        """Inside a jit: pin ``tree``'s arrays to their shardings (outputs keep the inputs' layout)."""
        return jax.tree.map(
            lambda a: jax.lax.with_sharding_constraint(a, self.sharding(a.shape)), tree
        )

    def constrain_batch(self, tree: Any) -> Any:
        """Inside a jit: pin one micro-batch's ``[B, ...]`` leaves to ``B`` over every device."""
        spec = NamedSharding(self.mesh, P(AXES))
        return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, spec), tree)

    def process_span(self) -> tuple[int, int]:
        """``[lo, hi)``: the columns of a ``[accum, global_batch]`` batch that this process's
        devices hold (the whole batch on one process)."""
        shape = (self.layout.accum, self.layout.global_batch)
        if jax.process_count() == 1:
            return 0, shape[1]
        held = sorted(
            {
                col
                for idx in self.batch_sharding.addressable_devices_indices_map(shape).values()
                for col in range(*idx[1].indices(shape[1]))
            }
        )
        lo, hi = held[0], held[-1] + 1
        if len(held) != hi - lo:  # make_mesh puts a process's devices next to each other
            raise ValueError(f"this process holds batch columns {held}, not one block")
        return lo, hi

    def local_rows(self) -> np.ndarray | None:
        """Which rows of a flat ``[accum × global_batch]`` batch this process reads (row
        ``m · global_batch + j`` is column ``j`` of micro-batch ``m``); None = all of them."""
        if jax.process_count() == 1:
            return None
        lo, hi = self.process_span()
        accum, width = self.layout.accum, self.layout.global_batch
        return (np.arange(accum)[:, None] * width + np.arange(lo, hi)[None, :]).ravel()

    def put_local_batch(self, x: Any, y: Any) -> tuple[Any, Any]:
        """This process's rows of a batch (``local_rows`` order: ``[accum × share, ...]``
        numpy leaves) → the global ``[accum, global_batch, ...]`` arrays over the mesh."""
        sharding = self.batch_sharding
        accum, width = self.layout.accum, self.layout.global_batch

        def put(leaf: np.ndarray) -> jax.Array:
            leaf = np.asarray(leaf)
            if leaf.shape[0] % accum:
                raise ValueError(f"{leaf.shape[0]} rows do not split into {accum} micro-batches")
            mine = leaf.reshape(accum, leaf.shape[0] // accum, *leaf.shape[1:])
            if jax.process_count() == 1:
                return jax.device_put(mine, sharding)
            return jax.make_array_from_process_local_data(
                sharding, mine, (accum, width, *leaf.shape[1:])
            )

        return jax.tree.map(put, x), jax.tree.map(put, y)

    def put_batch(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Whole host batches (pytrees of ``[accum × global_batch, ...]`` numpy leaves, the same
        on every process) → ``[accum, global_batch, ...]`` arrays split over the mesh; each
        process supplies only the rows its own devices hold."""
        rows = self.local_rows()
        if rows is None:
            return self.put_local_batch(x, y)
        return self.put_local_batch(
            jax.tree.map(lambda a: np.asarray(a)[rows], x),
            jax.tree.map(lambda a: np.asarray(a)[rows], y),
        )

    def conform_batch(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Batches a task placed itself (``[M, B, ...]`` on one device) re-laid onto the mesh:
        the same rows in order, ``[accum, global_batch, ...]``. A no-op for ``put_batch`` output."""
        leaves = jax.tree.leaves(x)
        if all(getattr(a, "sharding", None) == self.batch_sharding for a in leaves):
            return x, y
        if jax.process_count() > 1:
            raise UserError(
                "this training stage places its batches on one device, which a multi-process "
                "run cannot use",
                "its task must hand batches to jax_engine.sharding.placement(config).put_batch",
            )

        def flat(a: Any) -> np.ndarray:
            a = np.asarray(a)
            return a.reshape(-1, *a.shape[2:])

        return self.put_batch(jax.tree.map(flat, x), jax.tree.map(flat, y))


_PLACEMENTS: dict[tuple, Placement] = {}


def placement(config: Any) -> Placement:
    """The placement for ``config`` on the devices JAX sees (cached: tasks ask once per batch)."""
    t = config.train
    key = (
        config.mesh.data,
        config.mesh.fsdp,
        t.device_batch_size,
        t.total_batch_size,
        config.model.sequence_len,
        tuple(jax.devices()),
    )
    if key not in _PLACEMENTS:
        _PLACEMENTS[key] = Placement(*make_mesh(config))
    return _PLACEMENTS[key]


def gathered(x: jax.Array) -> jax.Array:
    """Inside a jit under ``jax.set_mesh``: ``x`` replicated on every device (one all-gather);
    unchanged without a mesh or on one device."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or math.prod(mesh.axis_sizes) == 1:
        return x
    return jax.lax.with_sharding_constraint(x, P())


# ---------------------------------------------------------------- several processes (hosts)

COMMAND_BYTES = 16384  # room for one step's control commands, JSON, shared by process 0


def init_distributed(
    coordinator: str, num_processes: int, process_id: int, heartbeat_timeout_s: int = 100
) -> None:
    """Join a multi-process run (``jax.distributed``); before anything else touches JAX. CPU
    collectives go through gloo (GPU/TPU use their own). A process silent for
    ``heartbeat_timeout_s`` is declared lost, which ends every other process."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator, num_processes, process_id, heartbeat_timeout_seconds=heartbeat_timeout_s
    )


def leave_job() -> None:
    """Wait at JAX's shutdown barrier until every process of the run got there (no-op on one
    process): after a failed step, this tells a failure every process had (they all arrive) from a
    lost process (JAX's runtime ends this one from a native thread within the heartbeat timeout;
    the supervisor in orchestrator/multihost.py prints which process was lost)."""
    if jax.process_count() > 1:
        jax.distributed.shutdown()


def is_primary() -> bool:
    """Whether this process writes the run's files and events (process 0)."""
    return jax.process_index() == 0


def share_commands(commands: list[dict]) -> list[dict]:
    """Process 0's control commands (stop, checkpoint, patch), the same on every process, so all
    of them take the same branch at the same step (one small broadcast; identity on one process)."""
    if jax.process_count() == 1:
        return commands
    import json

    from jax.experimental import multihost_utils

    data = json.dumps(commands if is_primary() else []).encode()
    if len(data) > COMMAND_BYTES:
        data = json.dumps([c for c in commands if c.get("cmd") == "stop"][:1]).encode()
    buf = np.zeros(COMMAND_BYTES, np.uint8)
    buf[: len(data)] = np.frombuffer(data, np.uint8)
    shared = np.asarray(multihost_utils.broadcast_one_to_all(buf))
    return json.loads(bytes(shared).rstrip(b"\0") or b"[]")


def barrier(name: str) -> None:
    """Wait until every process reaches ``name`` (no-op on one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
