"""The train step's state with the blocks stacked: compile time flat in depth under ``scan_layers``.

With ``model.scan_layers`` the forward runs each periodic run of blocks (``model.layer_runs``) as
one ``lax.scan``, but the model keeps one parameter leaf per block, so the step still grew with
depth: XLA:CPU compiles a kernel per output buffer, and every block's weight, gradient, momentum
and Adam moment was one (stacking them for the scan and splitting the results back cost a kernel
per leaf too). Here the step's inputs and outputs are the stacked arrays themselves:

- ``params``: the model's parameters as a pure dict whose ``blocks`` entry is replaced by
  ``stacked_blocks[f"r{run}"][f"q{phase}"]`` (one array per weight of a run's phase, the layers
  along axis 0), everything else as in the model.
- ``opt_state``: the optimizer's state over that tree (``tx.init`` of it), the same transforms;
  both Muons take a 3-D matrix leaf as a stack of matrices, AdamW is elementwise.

``StackedLayout`` converts both ways by key path (``blocks/i/...`` ↔
``stacked_blocks/r/q/...`` at index ``k``), so the model, the ``nnx.Optimizer`` and checkpoints
keep the per-layer layout: ``StackedTrainStep.sync()`` writes the state back before anything
reads the model (evaluation, samples, saves). Until then the model's arrays are stale: the
step deletes them (the blocks' copies explicitly, the rest by donation), so reading one fails
loudly rather than returning old weights.

On a mesh (``sharding.Placement``) a stacked leaf takes its per-layer sharding with the layer
axis in front unsplit (``P(None, *param_spec(one layer))``): each device holds the same part of
every layer it would hold per layer. Per-layer leaves keep ``param_spec``; batches, gradients
and the new state are pinned as in the per-layer step.

The step is used when ``scan_layers`` is on, no plugin hooks read the model in the step and the
run is one process (``step.make_train_step`` decides); otherwise the per-layer step runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from nanochat_tui.jax_engine.grads import as_f32, averaged, update_kwargs
from nanochat_tui.jax_engine.model import GPT, STACK_KEY, layer_runs, use_stacked_blocks
from nanochat_tui.jax_engine.sharding import Placement, param_spec

Names = tuple[Any, ...]


def _names(path: tuple[Any, ...]) -> Names:
    """A key path as plain names (dict keys, attribute names, indices), without nnx's trailing
    ``.value``, so an nnx ``State``'s paths and a pure pytree's compare equal."""
    out = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                out.append(getattr(key, attr))
                break
        else:
            raise TypeError(f"unexpected key {key!r} in a state path")
    if out and out[-1] == "value" and isinstance(path[-1], jax.tree_util.GetAttrKey):
        out.pop()
    return tuple(out)


def _nest(items: dict[Names, Any]) -> dict:
    """A nested dict from ``{names: leaf}``."""
    root: dict = {}
    for names, leaf in items.items():
        node = root
        for name in names[:-1]:
            node = node.setdefault(name, {})
        node[names[-1]] = leaf
    return root


class StackedLayout:
    """Where each block's leaves go when stacked: layer ``i`` → ``(run, phase, index)``."""

    def __init__(self, model: GPT) -> None:
        self.runs = layer_runs(model.blocks)
        self.where: dict[int, tuple[str, str, int]] = {}
        for r, (start, end, period) in enumerate(self.runs):
            for i in range(start, end):
                self.where[i] = (f"r{r}", f"q{(i - start) % period}", (i - start) // period)

    def target(self, names: Names) -> tuple[Names, int | None]:
        """A per-layer path's stacked path and index (``None``: a leaf outside the blocks)."""
        for j in range(len(names) - 1):
            if names[j] == "blocks" and isinstance(names[j + 1], int):
                r, q, k = self.where[names[j + 1]]
                return (*names[:j], STACK_KEY, r, q, *names[j + 2 :]), k
        return names, None

    def _gather(self, tree: Any) -> dict[Names, Any]:
        """``{stacked path: leaf or [leaves by index]}`` from a per-layer tree."""
        out: dict[Names, Any] = {}
        parts: dict[Names, dict[int, Any]] = defaultdict(dict)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            names, k = self.target(_names(path))
            if k is None:
                out[names] = leaf
            else:
                parts[names][k] = leaf
        for names, by_index in parts.items():
            out[names] = jnp.stack([by_index[k] for k in range(len(by_index))])
        return out

    def stack_params(self, params: Any) -> dict:
        """The model's per-layer parameters (an ``nnx.State`` or pure dict) stacked, as a pure
        dict (see the module docstring)."""
        return _nest(self._gather(params))

    def stack_like(self, tree: Any, abstract: Any) -> Any:
        """A per-layer tree (an optimizer state) stacked into ``abstract``'s structure (the
        same state built over the stacked parameters)."""
        leaves = self._gather(tree)
        paths, treedef = jax.tree_util.tree_flatten_with_path(abstract)
        out = []
        for path, want in paths:
            names = _names(path)
            if names not in leaves:
                raise ValueError(f"no per-layer leaf for the stacked state's {names}")
            leaf = leaves.pop(names)
            if tuple(leaf.shape) != tuple(want.shape):
                raise ValueError(f"{names}: stacked {leaf.shape}, expected {want.shape}")
            out.append(leaf)
        if leaves:
            raise ValueError(f"per-layer leaves with no stacked place: {sorted(leaves)[:3]}")
        return jax.tree_util.tree_unflatten(treedef, out)

    def unstack_like(self, stacked: Any, like: Any) -> Any:
        """The stacked tree's values in ``like``'s per-layer structure (slices of the stacks)."""
        values = {_names(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(stacked)[0]}
        paths, treedef = jax.tree_util.tree_flatten_with_path(like)
        out = []
        for path, _ in paths:
            names, k = self.target(_names(path))
            out.append(values[names] if k is None else values[names][k])
        return jax.tree_util.tree_unflatten(treedef, out)


def supports(model: GPT) -> bool:
    """Whether ``model`` can train stacked: scanned, with parameters only in its blocks."""
    if not model.config.scan_layers or not len(model.blocks):
        return False
    others = nnx.state(model.blocks, nnx.Not(nnx.Param))
    return not jax.tree.leaves(others)


class StackedTrainStep:
    """``step(model, optimizer, x, y, lr_scale, grad_clip=None) -> StepOut`` on a stacked state
    (module docstring); ``sync()`` writes it back into ``model`` and ``optimizer``."""

    def __init__(
        self,
        model: GPT,
        optimizer: nnx.Optimizer,
        loss: Callable,
        placement: Placement | None = None,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.placement = placement if placement is not None and placement.size > 1 else None
        self.layout = StackedLayout(model)
        self.graphdef, _, rest = nnx.split(model, nnx.Param, ...)
        self.rest = rest
        tx, layout, graphdef, placement = optimizer.tx, self.layout, self.graphdef, self.placement
        self.params: dict | None = None
        self.opt_state: Any = None
        self.count: jax.Array | None = None
        self._synced_params: list[Any] = []
        self._stale = False  # a step ran since the last sync
        self._written: list[jax.Array] = []  # the per-layer copies the last sync made
        like = jax.tree.map(  # the per-layer structure only: holds no arrays alive
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), nnx.state(model, nnx.Param)
        )

        def loss_of(p: dict, rest_: Any, xb: Any, yb: Any):
            if placement is not None:
                xb, yb = placement.constrain_batch((xb, yb))
            per_layer = layout.unstack_like(p, like)  # unused slices: XLA drops them
            merged = nnx.merge(graphdef, per_layer, rest_)
            with use_stacked_blocks(merged, p[STACK_KEY]):
                return as_f32(*loss(merged, xb, yb))

        def step(params, opt_state, count, rest_, x, y, lr_scale, grad_clip):
            grad_fn = jax.value_and_grad(lambda p, xb, yb: loss_of(p, rest_, xb, yb), has_aux=True)
            grads, out = averaged(grad_fn, params, x, y)
            updates, opt_state = tx.update(
                self._pin(grads), opt_state, params, **update_kwargs(lr_scale, grad_clip)
            )
            params = self._pin(optax.apply_updates(params, updates))
            return params, self._pin(opt_state), count + 1, out

        self._step = jax.jit(step, donate_argnums=(0, 1, 2))

    # ------------------------------------------------------------------ placement

    def _sharding(self, path: tuple[Any, ...], shape: tuple[int, ...]) -> NamedSharding:
        place = self.placement
        if STACK_KEY in _names(path):  # the layer axis unsplit, then one layer's rule
            spec = param_spec(tuple(shape[1:]), place.layout.fsdp)
            return NamedSharding(place.mesh, P(None, *spec))
        return place.sharding(tuple(shape))

    def _pin(self, tree: Any) -> Any:
        """Inside the jit: ``tree``'s arrays pinned to their shardings (none without a mesh)."""
        if self.placement is None:
            return tree
        return jax.tree_util.tree_map_with_path(
            lambda path, a: jax.lax.with_sharding_constraint(a, self._sharding(path, a.shape)),
            tree,
        )

    def _lay_out(self, tree: Any) -> Any:
        """``tree``'s arrays moved to their shardings (none without a mesh)."""
        if self.placement is None:
            return tree
        return jax.tree_util.tree_map_with_path(
            lambda path, a: jax.device_put(a, self._sharding(path, a.shape)), tree
        )

    # ------------------------------------------------------------------ state in and out

    def _load(self) -> None:
        """Stack the model's and optimizer's current state; free the per-layer block copies."""
        params = nnx.state(self.model, nnx.Param)
        self.params = self._lay_out(self.layout.stack_params(params))
        opt = nnx.as_pure(self.optimizer.opt_state)
        abstract = jax.eval_shape(self.optimizer.tx.init, self.params)
        self.opt_state = self._lay_out(self.layout.stack_like(opt, abstract))
        self.count = jnp.asarray(self.optimizer.step[...])
        self._written = self._block_leaves(params, opt)
        self._drop_written()

    def _block_leaves(self, *trees: Any) -> list[Any]:
        """The leaves of per-layer ``trees`` that belong to a block (they have a stacked twin)."""
        return [
            leaf
            for tree in trees
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
            if self.layout.target(_names(path))[1] is not None
        ]

    def _drop_written(self) -> None:
        for leaf in self._written:
            if isinstance(leaf, jax.Array) and not leaf.is_deleted():
                leaf.delete()
        self._written = []

    def _current(self) -> bool:
        """Whether the model still holds what the last sync wrote (nobody replaced it)."""
        synced = {id(leaf) for leaf in self._synced_params}
        return all(id(leaf) in synced for leaf in jax.tree.leaves(nnx.state(self.model, nnx.Param)))

    def sync(self) -> None:
        """Write the stacked state into the model and the optimizer (per-layer layout)."""
        if self.params is None or not self._stale:
            return
        self._stale = False
        place = self.placement.place if self.placement is not None else (lambda tree: tree)
        params_like = nnx.state(self.model, nnx.Param)
        nnx.update(self.model, place(self.layout.unstack_like(self.params, params_like)))
        opt_like = self.optimizer.opt_state
        new_opt = place(self.layout.unstack_like(self.opt_state, nnx.as_pure(opt_like)))
        nnx.update(self.optimizer.opt_state, nnx.state(new_opt))
        self.optimizer.step.set_value(self.count)
        params_now = nnx.state(self.model, nnx.Param)
        self._synced_params = jax.tree.leaves(params_now)
        self._written = self._block_leaves(params_now, nnx.as_pure(self.optimizer.opt_state))

    def __call__(self, model, optimizer, x, y, lr_scale, grad_clip=None):
        if model is not self.model or optimizer is not self.optimizer:
            raise ValueError("this train step is bound to the model and optimizer it was made for")
        if self.params is None:
            self._load()
        elif self._written:  # synced since the last step
            if not self._current():  # the model was replaced from outside: take it as it is
                self._written = []
                self._load()
            else:
                self._drop_written()
        clip = None if grad_clip is None else jnp.asarray(grad_clip, jnp.float32)
        self._stale = True
        args = (self.params, self.opt_state, self.count, self.rest, x, y)
        lr = jnp.asarray(lr_scale, jnp.float32)
        if self.placement is None:
            self.params, self.opt_state, self.count, out = self._step(*args, lr, clip)
        else:
            with jax.set_mesh(self.placement.mesh):  # traced under it: Muon gathers each matrix
                self.params, self.opt_state, self.count, out = self._step(*args, lr, clip)
        return out
