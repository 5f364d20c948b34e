"""Process start -> first frame of the TUI, over several fresh processes; prints p50 / max.

Each run spawns ``python -c`` that imports the app, runs it headless (same compositor, no
terminal output) on the ``tiny`` prefab with a fresh NANOCHAT_TUI_HOME, and records wall time
after the first refresh of the first screen; it also reports whether JAX was imported.

    uv run python benchmarks/first_frame.py [--runs 7] [--baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, time
t_import = time.time()
from nanochat_tui.tui.app import NanochatApp
t_imported = time.time()

class Probe(NanochatApp):
    async def on_mount(self) -> None:
        await super().on_mount()
        self.call_after_refresh(self._first_frame)

    def _first_frame(self) -> None:
        self.first_frame = time.time()
        self.exit(0)

app = Probe(prefab="tiny")
app.run(headless=True, size=(80, 24))
print(json.dumps({"import_start": t_import, "imported": t_imported, "first_frame": app.first_frame,
                  "jax_loaded": "jax" in sys.modules}))
"""


BASELINE = r"""
import json, sys, time
t_import = time.time()
from textual.app import App
from textual.widgets import Static
t_imported = time.time()

class Probe(App):
    def compose(self):
        yield Static("hello")

    def on_mount(self) -> None:
        self.call_after_refresh(self._first_frame)

    def _first_frame(self) -> None:
        self.first_frame = time.time()
        self.exit(0)

app = Probe()
app.run(headless=True, size=(80, 24))
print(json.dumps({"import_start": t_import, "imported": t_imported, "first_frame": app.first_frame,
                  "jax_loaded": "jax" in sys.modules}))
"""


def one_run(child: str = CHILD) -> dict[str, float | bool]:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "NANOCHAT_TUI_HOME": home, "WANDB_MODE": "offline"}
        start = time.time()
        proc = subprocess.run(
            [sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=120
        )
    if proc.returncode != 0:
        raise SystemExit(f"child failed:\n{proc.stderr[-3000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "first_frame_s": data["first_frame"] - start,
        "import_s": data["imported"] - data["import_start"],
        "interpreter_s": data["import_start"] - start,
        "jax_loaded": data["jax_loaded"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also time a bare one-widget Textual app (the floor)",
    )
    args = parser.parse_args()
    if args.baseline:
        base = [float(one_run(BASELINE)["first_frame_s"]) for _ in range(args.runs)]
        print(
            f"bare Textual app first frame: p50 {statistics.median(base):.3f}s  max {max(base):.3f}s"
        )
    runs = [one_run() for _ in range(args.runs)]
    print(f"{'run':>4} {'first frame':>12} {'app import':>11} {'python start':>13}  jax")
    for i, r in enumerate(runs, 1):
        print(
            f"{i:>4} {r['first_frame_s']:>11.3f}s {r['import_s']:>10.3f}s {r['interpreter_s']:>12.3f}s"
            f"  {'YES' if r['jax_loaded'] else 'no'}"
        )
    ff = [float(r["first_frame_s"]) for r in runs]
    print(
        f"\nprocess start -> first frame: p50 {statistics.median(ff):.3f}s  max {max(ff):.3f}s  ({len(ff)} runs)"
    )
    print("jax imported before first frame:", any(r["jax_loaded"] for r in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
