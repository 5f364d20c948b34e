"""OpenAI-compatible serving of a checkpoint: continuous batching engine + Starlette API."""
