"""Export a checkpoint to other runtimes (Hugging Face, ONNX, karpathy/nanochat) and import
nanochat's own checkpoints as run directories (docs/export.md).

A layer above the engine, like ``serve/``: it reads checkpoints through ``jax_engine`` and writes
each format with that format's light library (safetensors' NumPy API, onnx's graph helpers);
torch is needed only for nanochat's ``.pt`` files.
"""
