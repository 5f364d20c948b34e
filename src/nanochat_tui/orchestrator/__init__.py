"""Runs: start (thread or detached process), stop, checkpoint-now, patch, list and attach."""
