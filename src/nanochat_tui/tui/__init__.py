"""The Textual UI. Never imports JAX at module load (a test checks it)."""
