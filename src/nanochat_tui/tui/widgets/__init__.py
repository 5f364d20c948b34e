"""Small reusable widgets of the TUI shell."""
