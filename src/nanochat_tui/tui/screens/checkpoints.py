"""Checkpoints pane (key 2): every checkpoint on disk, whether it fits the active config, load one.

Each of our rows says whether it is pinned (kept out of ``train.keep_checkpoints`` rotation; ``p``
toggles it, manual checkpoints are pinned when saved) and, for every metric, the step it was
measured at when that is not the checkpoint's own step (a val bpb from an older eval is marked).
One whose files are damaged (``checkpoint_files.damage``: a data file truncated or missing since
it was saved, unreadable tree metadata) is marked ``✗ damaged`` with the reason; Enter refuses it.

Lists our orbax checkpoints (``runs_dir()/<run>/checkpoints/<step>``, read from their meta JSON) and,
read-only, nanochat's PyTorch ones (``$NANOCHAT_BASE_DIR/*_checkpoints/*/meta_*.json``). Compatibility
with ``app.state.config`` comes from config/compat.py; the highlighted row's reasons and remedies are
shown under the table. No JAX here: loading a checkpoint only records it in ``app.state``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import DataTable, Static

from nanochat_tui import paths
from nanochat_tui.config.compat import adopt
from nanochat_tui.config.loader import ConfigError, diff
from nanochat_tui.rundir import CheckpointInfo, damaged_checkpoints, list_run_dirs, set_pinned
from nanochat_tui.tui import init_from
from nanochat_tui.tui.messages import CheckpointLoaded, ConfigChanged
from nanochat_tui.tui.screens.checkpoint_rows import (
    CheckpointRow,
    damage_remedy,
    discover,
    human_size,
    train_loss,
)

NANOCHAT_READ_ONLY = (
    "nanochat (PyTorch) checkpoints are listed read-only: nanochat-tui loads the orbax checkpoints "
    "its own JAX training writes"
)
NANOCHAT_REMEDY = (
    "train a run with this shape here (press a to adopt it) and load that run's checkpoint"
)


class CheckpointsPane(Widget):
    """DataTable of checkpoints with a compatible-only filter and the highlighted row's reasons."""

    DEFAULT_CSS = """
    CheckpointsPane { height: 1fr; }
    CheckpointsPane #ckpt-summary { height: 1; padding: 0 1; background: $boost; }
    CheckpointsPane DataTable { height: 1fr; }
    CheckpointsPane #ckpt-reasons { height: auto; max-height: 10; padding: 0 1; border-top: solid $primary; }
    """

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("f", "toggle_filter", "All/compatible", id="checkpoints.filter"),
        Binding("r", "refresh", "Refresh", id="checkpoints.refresh"),
        Binding("enter", "load", "Load", id="checkpoints.load", priority=False),
        Binding("u", "unload", "Unload (new runs from scratch)", id="checkpoints.unload"),
        Binding("a", "adopt", "Adopt shape", id="checkpoints.adopt"),
        Binding("delete", "delete", "Delete", id="checkpoints.delete"),
        Binding("p", "toggle_pin", "Pin/unpin", id="checkpoints.pin"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows: list[CheckpointRow] = []
        self.damaged: list[Path] = []
        self.compatible_only = False
        self.nanochat_base: Path | None = None  # tests point this elsewhere; None = env/default

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="ckpt-summary")
            table: DataTable = DataTable(id="ckpt-table", cursor_type="row", zebra_stripes=True)
            yield table
            yield Static(id="ckpt-reasons")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, key in (
            ("stage", "stage"),
            ("run", "run"),
            ("step", "step"),
            ("pin", "pin"),
            ("val bpb", "bpb"),
            ("loss", "loss"),
            ("compatible", "compat"),
            ("size", "size"),
            ("date", "date"),
        ):
            table.add_column(label, key=key)
        self.refresh_rows()
        table.focus()

    # ------------------------------------------------------------ data

    @property
    def visible_rows(self) -> list[CheckpointRow]:
        return [r for r in self.rows if r.compatible] if self.compatible_only else list(self.rows)

    def refresh_rows(self) -> None:
        """Re-scan disk and re-check against the active config."""
        config = self.app.state.config  # type: ignore[attr-defined]
        try:
            self.rows = discover(config, nanochat_base=self.nanochat_base)
            self.damaged = [
                p for run in list_run_dirs(paths.runs_dir()) for p in damaged_checkpoints(run)
            ]
        except OSError as err:
            self.rows, self.damaged = [], []
            self.notify(f"cannot list checkpoints: {err}", severity="error")
        self._fill()

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        keep = self.highlighted.key if self.highlighted else None
        table.clear()
        loaded = self.app.state.checkpoint  # type: ignore[attr-defined]
        loaded_key = str(loaded.path) if loaded is not None else None
        for row in self.visible_rows:
            if row.damage is not None:
                compat = Text("✗ damaged", style="red bold")
            elif row.compatible:
                compat = Text("✓ yes", style="green")
            else:
                compat = Text(
                    f"✗ {len(row.problems)} issue{'s' if len(row.problems) > 1 else ''}",
                    style="red",
                )
            run = Text(("● " if row.key == loaded_key else "") + row.run)
            table.add_row(
                row.stage,
                run,
                Text(str(row.step), justify="right"),
                Text("★", style="yellow") if row.pinned else "",
                row.metric_text("val_bpb", row.val_bpb),
                row.metric_text("train_loss", train_loss(row), 3),
                compat,
                Text(human_size(row.size), justify="right"),
                f"{row.date:%Y-%m-%d %H:%M}" if row.date else "–",
                key=row.key,
            )
        if keep is not None:
            keys = [r.key for r in self.visible_rows]
            if keep in keys:
                table.move_cursor(row=keys.index(keep))
        self._update_summary()
        self._show_reasons()

    def _update_summary(self) -> None:
        n_ok = sum(r.compatible for r in self.rows)
        mode = "compatible only" if self.compatible_only else "all"
        config = self.app.state.config  # type: ignore[attr-defined]
        loaded = self.app.state.checkpoint  # type: ignore[attr-defined]
        text = (
            f"{len(self.visible_rows)} shown · {n_ok}/{len(self.rows)} fit config '{config.name}' "
            f"(d{config.model.depth}, {config.model.model_dim} wide) · filter: {mode} [f]"
        )
        if loaded is not None:
            text += f" · loaded: {loaded.run_dir.name} step {loaded.step}"
        summary = Text(text)
        damaged = [f"{r.run}/{r.step}" for r in self.rows if r.damage is not None]
        if damaged:
            summary.append(f" · {len(damaged)} damaged: {', '.join(damaged[:3])}", style="red")
        if self.damaged:
            names = ", ".join(f"{p.parent.parent.name}/{p.name}" for p in self.damaged[:3])
            summary.append(f" · {len(self.damaged)} unreadable: {names}", style="yellow")
        self.query_one("#ckpt-summary", Static).update(summary)

    @property
    def highlighted(self) -> CheckpointRow | None:
        table = self.query_one(DataTable)
        rows = self.visible_rows
        if not rows or table.cursor_row is None or not 0 <= table.cursor_row < len(rows):
            return None
        return rows[table.cursor_row]

    def _show_reasons(self) -> None:
        widget = self.query_one("#ckpt-reasons", Static)
        row = self.highlighted
        if row is None:
            runs = paths.runs_dir()
            if self.rows and self.compatible_only:
                msg = "No checkpoint fits the active config. Press f to show all and see why."
            else:
                msg = f"No checkpoints yet. Start a run on Runs (4, then n) — runs are saved under {runs}."
            widget.update(msg)
            return
        text = Text()
        text.append(f"{row.run} · step {row.step} · {self._short_path(row)}\n", style="bold")
        if row.source == "nanochat":
            text.append(f"{NANOCHAT_READ_ONLY}.\n", style="yellow")
        else:
            text.append(self._provenance(row))
        if row.damage is not None:
            text.append("✗ damaged: ", style="red bold")
            text.append(f"{row.damage}  ")
            text.append(f"→ {damage_remedy(self.rows, row)}\n", style="cyan")
        elif row.compatible:
            text.append(
                "Fits the active config. Enter loads it as the baseline for training and chat."
            )
        for p in row.problems:
            text.append(f"✗ {p.field}: ", style="red bold")
            text.append(f"{p.reason}  ")
            text.append(f"→ {p.remediation}\n", style="cyan")
        if row.problems:
            text.append("a: adopt this checkpoint's shape into the config", style="dim")
        widget.update(text)

    @staticmethod
    def _provenance(row: CheckpointRow) -> Text:
        """Stage, why it was saved, pinned or not, and the step each metric was measured at."""
        text = Text(f"stage {row.stage}")
        reason = row.meta.get("reason")
        if reason:
            text.append(f" · saved: {reason}")
        text.append(" · ")
        if row.pinned:
            text.append("★ pinned: kept out of rotation (p unpins)", style="yellow")
        else:
            text.append("not pinned: rotated by train.keep_checkpoints (p pins)", style="dim")
        for name, label in (("val_bpb", "val bpb"), ("train_loss", "train loss")):
            value = row.metrics.get(name, {}).get("value")
            at = row.measured_at(name)
            if value is None:
                continue
            text.append(f"\n{label} {value:.4f} ")
            if at is None:
                text.append("(step not recorded)", style="dim")
            elif at == row.step:
                text.append(f"(measured at this step, {at})", style="dim")
            else:
                text.append(
                    f"(measured at step {at}, {row.step - at} steps earlier)", style="yellow"
                )
        text.append("\n")
        return text

    def _short_path(self, row: CheckpointRow) -> str:
        """The path relative to the runs dir or nanochat base (shorter, and stable in snapshots)."""
        from nanochat_tui.config.compat import nanochat_base_dir

        path = Path(row.key)
        roots = (
            [(paths.runs_dir(), "runs/")]
            if row.source == "run"
            else [(self.nanochat_base or nanochat_base_dir(), "$NANOCHAT_BASE_DIR/")]
        )
        for root, label in roots:
            try:
                return label + str(path.relative_to(root))
            except ValueError:
                pass
        return str(path)

    # ------------------------------------------------------------ events

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_reasons()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_load()

    def on_config_changed(self, message: ConfigChanged) -> None:
        if self.is_mounted:
            self.refresh_rows()

    def on_checkpoint_loaded(self, message: CheckpointLoaded) -> None:
        if self.is_mounted:
            self._fill()

    # ------------------------------------------------------------ actions

    def action_toggle_filter(self) -> None:
        self.compatible_only = not self.compatible_only
        self._fill()

    def action_refresh(self) -> None:
        self.refresh_rows()
        self.notify(f"{len(self.rows)} checkpoints found", timeout=2)

    def action_load(self) -> None:
        """Make the highlighted checkpoint the baseline (app.state.checkpoint)."""
        row = self.highlighted
        if row is None:
            self.notify("No checkpoint highlighted", severity="warning")
            return
        if row.source == "nanochat":
            self.notify(f"{NANOCHAT_READ_ONLY}. {NANOCHAT_REMEDY}.", severity="warning", timeout=8)
            return
        if row.damage is not None:
            self.notify(
                f"{row.run} step {row.step} is damaged ({row.damage}): "
                f"{damage_remedy(self.rows, row)}",
                severity="error",
                timeout=8,
            )
            return
        info = row.info
        assert isinstance(info, CheckpointInfo)
        self.app.state.checkpoint = info  # type: ignore[attr-defined]
        self.post_message(CheckpointLoaded(info))
        if row.compatible:
            self.notify(
                f"Loaded {row.run} step {row.step}: Chat's model (3) and the start of new runs "
                "(u unloads)"
            )
        else:
            first = row.problems[0]
            self.notify(
                f"Loaded {row.run} step {row.step} for chat/eval; it does not fit the config for "
                f"training ({first.field}: {first.reason}); a new run asks first. Press a to "
                "adopt its shape, u to unload it.",
                severity="warning",
                timeout=8,
            )
        self._fill()

    def action_unload(self) -> None:
        """Clear the loaded checkpoint (Chat's model, the start of new runs)."""
        init_from.unload(self.app)

    def action_adopt(self) -> None:
        """Reshape the active config to the highlighted checkpoint (and init from it if ours)."""
        row = self.highlighted
        if row is None:
            return
        state = self.app.state  # type: ignore[attr-defined]
        try:
            target = adopt(state.config, row.meta)
            changes = {k: new for k, old, new in diff(state.config, target)}
            if row.source == "run":
                changes["run.init_from"] = row.key
            for dotted, value in changes.items():
                state.set_override(dotted, value)
        except ConfigError as err:
            self.notify(f"cannot adopt: {err}", severity="error", timeout=8)
            return
        self.post_message(ConfigChanged(state.config))
        self.notify(f"Config now matches {row.run} step {row.step} ({len(changes)} changes)")
        self.refresh_rows()

    def action_toggle_pin(self) -> None:
        """Pin the highlighted checkpoint (kept out of rotation) or unpin it."""
        row = self.highlighted
        if row is None:
            return
        if row.source == "nanochat":
            self.notify("nanochat checkpoints are read-only here", severity="warning")
            return
        info = row.info
        assert isinstance(info, CheckpointInfo)
        try:
            set_pinned(info.run_dir, row.step, not row.pinned)
        except OSError as err:
            self.notify(f"cannot change the pin: {err.strerror}", severity="error")
            return
        if row.pinned:
            self.notify(f"Unpinned {row.run} step {row.step}: rotation may delete it")
        else:
            self.notify(f"Pinned {row.run} step {row.step}: kept out of rotation")
        self.refresh_rows()

    def action_delete(self) -> None:
        """Delete the highlighted checkpoint (ours only), after confirmation."""
        row = self.highlighted
        if row is None:
            return
        if row.source == "nanochat":
            self.notify(
                "nanochat checkpoints are read-only here; delete them with your shell",
                severity="warning",
            )
            return
        path = Path(row.key)

        def done(ok: bool | None) -> None:
            if not ok:
                return
            try:
                shutil.rmtree(path)
            except OSError as err:
                self.notify(f"cannot delete {path}: {err.strerror}", severity="error")
                return
            state = self.app.state  # type: ignore[attr-defined]
            if state.checkpoint is not None and str(state.checkpoint.path) == row.key:
                state.checkpoint = None
                self.post_message(CheckpointLoaded(None))
            self.notify(f"Deleted {row.run} step {row.step}")
            self.refresh_rows()

        confirm(
            self, f"Delete checkpoint {row.run} step {row.step} ({human_size(row.size)})?", done
        )

    def palette_commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        return [
            (
                "Checkpoints: toggle compatible-only filter",
                "show all or only fitting ones",
                self.action_toggle_filter,
            ),
            ("Checkpoints: refresh", "re-scan run directories", self.action_refresh),
            ("Checkpoints: load highlighted", "baseline for training and chat", self.action_load),
            (
                "Checkpoints: unload",
                "Chat has no model, new runs start from scratch (u)",
                self.action_unload,
            ),
            (
                "Checkpoints: adopt shape",
                "set the config's model to the checkpoint's",
                self.action_adopt,
            ),
            ("Checkpoints: delete highlighted", "asks first", self.action_delete),
            (
                "Checkpoints: pin/unpin highlighted",
                "pinned checkpoints are kept out of rotation",
                self.action_toggle_pin,
            ),
        ]


def confirm(widget: Widget, question: str, callback: Callable[[bool | None], None]) -> None:
    """Ask yes/no with the shell's ConfirmScreen; ``callback(True)`` on yes."""
    from nanochat_tui.tui.screens.confirm import ConfirmScreen

    widget.app.push_screen(ConfirmScreen(question), callback)
