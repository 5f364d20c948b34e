"""Process start -> first frame, and -> config pane ready, over fresh processes; p50 / max.

Each run spawns ``python -c`` that imports the app and runs it headless (same compositor, no
terminal output) on the ``tiny`` prefab with a fresh NANOCHAT_TUI_HOME. It records the wall time
at which the compositor hands the app's first frame to the driver (tab strip, status row and a
"loading prefab" line), and the first frame in which the Config pane shows its fields. It also
reports whether JAX was imported by the first frame and which heavy modules (pydantic, yaml,
keyring, psutil, jax) came in with the app module itself.

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
heavy_at_import = sorted(m for m in ("pydantic", "yaml", "keyring", "psutil", "jax") if m in sys.modules)

class Probe(NanochatApp):
    first_frame = pane_ready = None
    jax_at_first_frame = False

    def _display(self, screen, renderable) -> None:
        super()._display(screen, renderable)
        if renderable is None:
            return
        now = time.time()
        if self.first_frame is None:  # the first frame the compositor hands to the driver
            self.first_frame = now
            self.jax_at_first_frame = "jax" in sys.modules
        # pane ready: the first frame in which the config pane shows its fields
        if self.pane_ready is None and self.query("#pane-config FieldRow"):
            self.pane_ready = now
            self.call_later(self.exit, 0)

app = Probe(prefab="tiny")
app.run(headless=True, size=(80, 24))
print(json.dumps({"import_start": t_import, "imported": t_imported, "first_frame": app.first_frame,
                  "pane_ready": app.pane_ready, "jax_loaded": app.jax_at_first_frame,
                  "heavy_at_import": heavy_at_import}))
"""


BASELINE = r"""
import json, sys, time
t_import = time.time()
from textual.app import App
from textual.widgets import Static
t_imported = time.time()

class Probe(App):
    first_frame = None

    def compose(self):
        yield Static("hello")

    def _display(self, screen, renderable) -> None:
        super()._display(screen, renderable)
        if renderable is not None and self.first_frame is None:
            self.first_frame = time.time()
            self.call_later(self.exit, 0)

app = Probe()
app.run(headless=True, size=(80, 24))
print(json.dumps({"import_start": t_import, "imported": t_imported, "first_frame": app.first_frame,
                  "pane_ready": app.first_frame, "jax_loaded": "jax" in sys.modules,
                  "heavy_at_import": []}))
"""


PYCACHE: str | None = None  # --pyc: a private bytecode cache (PYTHONPYCACHEPREFIX)


def one_run(child: str = CHILD) -> dict[str, float | bool]:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "NANOCHAT_TUI_HOME": home, "WANDB_MODE": "offline"}
        if PYCACHE is not None:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = PYCACHE
        start = time.time()
        proc = subprocess.run(
            [sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=120
        )
    if proc.returncode != 0:
        raise SystemExit(f"child failed:\n{proc.stderr[-3000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "first_frame_s": data["first_frame"] - start,
        "pane_ready_s": data["pane_ready"] - start,
        "heavy_at_import": data["heavy_at_import"],
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
    parser.add_argument(
        "--pyc",
        action="store_true",
        help="with bytecode cached (a private PYTHONPYCACHEPREFIX, warmed by one untimed run), "
        "as after any normal install; by default the environment decides (PYTHONDONTWRITEBYTECODE=1 "
        "and a venv without .pyc files means every start compiles textual and pydantic)",
    )
    args = parser.parse_args()
    global PYCACHE
    if args.pyc:
        PYCACHE = tempfile.mkdtemp(prefix="ff-pyc-")
        one_run(BASELINE), one_run()  # warm the cache
    cached = PYCACHE is not None or not os.environ.get("PYTHONDONTWRITEBYTECODE")
    print(f"bytecode: {'cached' if cached else 'compiled from source at every start'}")
    if args.baseline:
        base = [float(one_run(BASELINE)["first_frame_s"]) for _ in range(args.runs)]
        print(
            f"bare Textual app first frame: p50 {statistics.median(base):.3f}s  max {max(base):.3f}s"
        )
    runs = [one_run() for _ in range(args.runs)]
    print(
        f"{'run':>4} {'first frame':>12} {'pane ready':>11} {'app import':>11} {'python start':>13}  jax"
    )
    for i, r in enumerate(runs, 1):
        print(
            f"{i:>4} {r['first_frame_s']:>11.3f}s {r['pane_ready_s']:>10.3f}s {r['import_s']:>10.3f}s"
            f" {r['interpreter_s']:>12.3f}s  {'YES' if r['jax_loaded'] else 'no'}"
        )
    ff = [float(r["first_frame_s"]) for r in runs]
    ready = [float(r["pane_ready_s"]) for r in runs]
    print(
        f"\nprocess start -> first frame:       p50 {statistics.median(ff):.3f}s  max {max(ff):.3f}s"
        f"  ({len(ff)} runs)"
    )
    print(
        f"process start -> config pane ready: p50 {statistics.median(ready):.3f}s"
        f"  max {max(ready):.3f}s"
    )
    print("jax imported before first frame:", any(r["jax_loaded"] for r in runs))
    print(
        "heavy modules imported with the app module:",
        sorted({m for r in runs for m in r["heavy_at_import"]}) or "none",
    )
    print("load average (1/5/15 min):", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
