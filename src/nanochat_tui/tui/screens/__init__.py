"""Panes and modal screens of the TUI."""
