"""A telemetry source: the run's hub polls it; it says hello once."""

from __future__ import annotations


def make_source(run_dir, config):
    section = config.plugins.get("hello")
    said = []

    def poll():
        if said or not section or not section.get("enabled", True):
            return None
        said.append(True)
        return {"type": "log", "level": "info", "message": f"{section['greeting']} from a plugin"}

    return poll
