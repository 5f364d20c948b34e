"""Shared by the launch tests: a local price table in place of SkyPilot's catalog, and the rule
for tests that need SkyPilot itself (skip with the reason; fail under NANOCHAT_TUI_REQUIRE_CLOUD=1,
which .ci/run sets after installing the `cloud` extra)."""

from __future__ import annotations

import importlib.util
import os

import pytest

from nanochat_tui.errors import UserError
from nanochat_tui.orchestrator import launch

# $/h per node: (cloud, accelerator spec, spot) -> price; what the catalog functions return here
TABLE = {
    ("gcp", "tpu-v6e-8:1", False): 21.60,
    ("aws", "H100:8", False): 98.32,
    ("aws", "H100:8", True): 39.33,
    ("aws", "H100:4", False): 49.16,
}


def local_price(cloud: str, acc: launch.Accelerator, spot: bool, region: str = "") -> float:
    """The catalog lookup on TABLE; a missing row is the catalog's own UserError."""
    try:
        return TABLE[(cloud, acc.spec, spot)]
    except KeyError:
        raise UserError(f"{cloud} offers no {acc.spec} in this test's table") from None


def require_sky() -> None:
    """Skip (with the reason) when SkyPilot is not installed; fail instead in CI."""
    if importlib.util.find_spec("sky") is not None:
        return
    why = "needs SkyPilot: the `cloud` extra (`uv run --extra cloud pytest`; .ci/run installs it)"
    if os.environ.get("NANOCHAT_TUI_REQUIRE_CLOUD") == "1":
        pytest.fail(why, pytrace=False)
    pytest.skip(why, allow_module_level=True)
