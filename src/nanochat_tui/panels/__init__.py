"""Live panels: MetricStore (decimated, coalesced metric history) and the built-in panel widgets.

Panel types register in the plugin registry (``registry.add_panel``); screens declare them in a
prefab's ``ui.screens``. See docs/cockpit.md. Import ``panels.base`` / ``panels.builtin`` directly
(they import Textual); this package itself stays import-free.
"""
