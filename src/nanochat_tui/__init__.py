"""nanochat-tui: a terminal cockpit for training and chatting with a small nanochat-style LLM."""

__version__ = "0.1.0"
