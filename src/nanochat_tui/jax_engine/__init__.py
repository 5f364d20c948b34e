"""In-process JAX training engine: model, optimizer, train loop, checkpoints, sampling.

Import-light on purpose: nothing here imports JAX; import the submodules you need
(``from nanochat_tui.jax_engine.model import GPT``).
"""
