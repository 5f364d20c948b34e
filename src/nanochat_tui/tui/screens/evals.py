"""Evals pane (key 9): task-eval results of every run and checkpoint, side by side.

One row per saved result (``RUN/evals/<task>/step_N.json``): run, stage, step, task, accuracy,
items, the mean NLL of the right choice, and **Δ parent**: the accuracy change against the same
task on the checkpoint the run started from (``run.init_from``: an SFT run against its base).
``e`` scores the loaded checkpoint (key 2 loads one) on a task — the embedded ``stdlib-modules``
by default, or a JSONL file in nanochat's CORE/ARC/MMLU/GSM8K format — in a worker thread, where
JAX is imported; ``t`` cycles the task filter; ``r`` re-reads the runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable, Static

from nanochat_tui.errors import UserError
from nanochat_tui.tui.worker_errors import ReportsWorkerErrors

COLUMNS = ("run", "stage", "step", "task", "accuracy", "items", "gold nll", "Δ parent")


def _parent(run_dir: Path) -> tuple[Path, int | None] | None:
    """The run (and step, when a step dir was named) that ``run_dir`` started from."""
    import yaml

    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    init = (config.get("run") or {}).get("init_from")
    if not init:
        return None
    path = Path(init).expanduser()
    if path.name.isdigit() and path.parent.name == "checkpoints":
        return path.parent.parent, int(path.name)
    if path.name == "checkpoints":
        return path.parent, None
    return path, None


def result_rows(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Every saved result of ``run_dirs`` with its run name and the change against the parent
    checkpoint's result on the same task (None when the parent has none)."""
    from nanochat_tui.align.tasks import read_results

    by_run = {Path(d).resolve(): read_results(Path(d)) for d in run_dirs}
    rows = []
    for run_dir, results in by_run.items():
        parent = _parent(run_dir)
        for r in results:
            delta = None
            if parent is not None:
                theirs = by_run.get(parent[0].resolve())
                if theirs is None:
                    theirs = read_results(parent[0])
                same = [p for p in theirs if p["task"] == r["task"]]
                if parent[1] is not None:
                    same = [p for p in same if int(p["step"]) == parent[1]]
                if same:
                    delta = r["accuracy"] - same[-1]["accuracy"]
            rows.append({**r, "run": run_dir.name, "run_dir": str(run_dir), "delta": delta})
    return sorted(rows, key=lambda r: (r["task"], r["run"], int(r["step"])))


class EvalsPane(ReportsWorkerErrors, Widget):
    """Saved task-eval results across runs and checkpoints; ``e`` evaluates the loaded one."""

    DEFAULT_CSS = """
    EvalsPane { layout: vertical; height: 1fr; }
    EvalsPane > #evals-header { height: 1; background: $boost; padding: 0 1; }
    EvalsPane > DataTable { height: 1fr; }
    EvalsPane > #evals-empty { padding: 1 2; color: $text-muted; }
    EvalsPane > #evals-hint { height: 1; color: $text-muted; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("e", "evaluate", "Evaluate the loaded checkpoint", id="evals.run"),
        Binding("t", "next_task", "Next task filter", id="evals.task"),
        Binding("r", "refresh", "Re-read the results", id="evals.refresh"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows: list[dict[str, Any]] = []
        self.task_filter: str | None = None
        self.running: str | None = None  # "task on run step N" while an eval runs
        self.loads = 0  # completed loads (tests wait on it)

    def compose(self) -> ComposeResult:
        yield Static("", id="evals-header")
        table: DataTable = DataTable(id="evals-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        yield Static(
            "No task evals yet. Load a checkpoint (key 2), then press e here; or run "
            "`nanochat-tui eval RUN_DIR --task stdlib-modules`.",
            id="evals-empty",
        )
        yield Static(
            Text("e evaluate loaded checkpoint · t task filter · r refresh"), id="evals-hint"
        )

    def on_mount(self) -> None:
        self._header()
        self.action_refresh()

    def initial_focus(self) -> Widget | None:
        return self.query_one(DataTable)

    # ------------------------------------------------------------ loading

    @work(
        thread=True,
        name="Reading task-eval results",
        group="evals-load",
        exclusive=True,
        exit_on_error=False,
    )
    def action_refresh(self) -> None:
        from nanochat_tui.orchestrator.summaries import list_runs

        rows = result_rows([s.run_dir for s in list_runs()])
        self.app.call_from_thread(self._fill, rows)

    def _fill(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        tasks = self.tasks()
        if self.task_filter not in tasks:
            self.task_filter = None
        table = self.query_one(DataTable)
        table.clear()
        shown = [r for r in rows if self.task_filter in (None, r["task"])]
        for r in shown:
            delta = r["delta"]
            table.add_row(
                r["run"],
                r.get("stage", "?"),
                str(r["step"]),
                r["task"],
                f"{r['accuracy']:.3f}",
                str(r.get("n", "")),
                f"{r['mean_gold_nll']:.3f}" if "mean_gold_nll" in r else "—",
                Text(
                    "—" if delta is None else f"{delta:+.3f}",
                    style="" if delta is None else ("green" if delta > 0 else "red"),
                ),
            )
        self.query_one("#evals-empty", Static).display = not shown
        table.display = bool(shown)
        self.loads += 1
        self._header()

    def tasks(self) -> list[str]:
        return sorted({r["task"] for r in self.rows})

    def _header(self) -> None:
        where = self.task_filter or "all tasks"
        busy = f" · evaluating {self.running}…" if self.running else ""
        self.query_one("#evals-header", Static).update(
            Text(f"Task evals — {where} · {len(self.rows)} results{busy}")
        )

    # ------------------------------------------------------------ actions

    def action_next_task(self) -> None:
        tasks = [None, *self.tasks()]
        self.task_filter = tasks[(tasks.index(self.task_filter) + 1) % len(tasks)]
        self._fill(self.rows)

    def action_evaluate(self) -> None:
        ckpt = self.app.state.checkpoint  # type: ignore[attr-defined]
        if ckpt is None:
            self.notify("Load a checkpoint first: key 2, then Enter on a row", severity="warning")
            return
        if self.running:
            self.notify(f"Already evaluating {self.running}", severity="warning")
            return
        from nanochat_tui.tui.screens.prompt import PromptModal

        def check(text: str) -> str | None:
            from nanochat_tui.align.tasks import load_task

            try:
                load_task(text or "stdlib-modules")
            except UserError as err:
                return str(err)
            return None

        def chosen(text: str | None) -> None:
            if text is not None:
                self.evaluate(ckpt.path, text or "stdlib-modules")

        self.app.push_screen(
            PromptModal(
                f"Evaluate {ckpt.run_dir.name} step {ckpt.step} on a task",
                help="stdlib-modules (embedded, held out of SFT) or a .jsonl path in nanochat's "
                "CORE, ARC, MMLU or GSM8K format",
                value="stdlib-modules",
                validate=check,
            ),
            chosen,
        )

    def evaluate(self, step_dir: Path, task_spec: str) -> None:
        """Score ``step_dir`` on ``task_spec`` in a thread, save the result, refresh the table."""
        self.running = (
            f"{task_spec} on {Path(step_dir).parent.parent.name} step {Path(step_dir).name}"
        )
        self._header()
        self._evaluate(Path(step_dir), task_spec)

    @work(
        thread=True,
        name="Evaluating the checkpoint",
        group="evals-run",
        exclusive=True,
        exit_on_error=False,
    )
    def _evaluate(self, step_dir: Path, task_spec: str) -> None:
        try:
            from nanochat_tui.align.tasks import load_task
            from nanochat_tui.jax_engine.inference import ChatModel
            from nanochat_tui.jax_engine.task_eval import evaluate_task, save_result

            task = load_task(task_spec)
            from nanochat_tui.orchestrator.plugin_hooks import model_mlp

            cm = ChatModel.load(step_dir, mlp_for=model_mlp)
            result = evaluate_task(
                cm.model, cm.tokenizer, task, seq_len=cm.config.model.sequence_len
            )
            save_result(cm.path.parent.parent, result, step=cm.step, stage=cm.config.train.stage)
            message = f"{task.name}: accuracy {result['accuracy']:.3f} ({result['correct']}/{result['n']})"
            self.app.call_from_thread(self._done, message, None)
        except Exception as err:  # keep the pane alive; say what failed
            self.app.call_from_thread(self._done, None, f"{type(err).__name__}: {err}")

    def _done(self, message: str | None, error: str | None) -> None:
        self.running = None
        if error:
            self.notify(error, severity="error", timeout=10)
        else:
            self.notify(message or "done", timeout=4)
        self.action_refresh()

    def palette_commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        return [
            ("Evals: evaluate the loaded checkpoint", "on a task (e)", self.action_evaluate),
            ("Evals: next task filter", "t", self.action_next_task),
        ]
