"""Alignment: the chat format, chat datasets (SFT) and the calculator tool.

Pure Python (no JAX, no UI): the engine's SFT task, the sampler and the TUI all build on it.
Functions that tokenize take any tokenizer with ``encode(str) -> list[int]``, ``special(name)``
and ``bos_id`` (``jax_engine.tokenizer.Tokenizer``), so this package imports nothing engine-side.
"""
