"""Plugins shipped with nanochat-tui: MoE (``moe/``) and the architecture designer
(``designer/``).

Each registers only through the ``nanochat_tui.plugins`` entry point in pyproject.toml, exactly as
a third-party package would; no core module imports this package (an import-linter contract), so a
user can switch either off in ``plugins.yaml`` like any other plugin.
"""
