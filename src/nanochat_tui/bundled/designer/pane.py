"""The Designer pane: compose a model from layers with the keyboard, see it validated and sized
as you type, and save it as a prefab that starts training in one key.

Keys (layer table focused): ``a`` add block · ``c`` duplicate · ``x`` delete · ``[``/``]`` move
up/down · ``e`` edit (``field=value …`` in the edit line; enter applies, typing previews) · ``u``
undo · ``r`` redo · ``t`` next template · ``s`` save JSON · ``o`` open JSON · ``p`` save as prefab
and train.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from nanochat_tui.bundled.designer import edit as ed
from nanochat_tui.bundled.designer.design import Design, Problem, problems
from nanochat_tui.bundled.designer.history import History
from nanochat_tui.errors import UserError

HINT = (
    "a add · c dup · x del · [ ] move · e edit · u undo · r redo · t template · s save · o open · "
    "p prefab+train · X onnx"
)
COLUMNS = (
    ("#", 3),
    ("layer", 9),
    ("heads", 6),
    ("kv", 4),
    ("window", 7),
    ("mlp", 7),
    ("hidden", 7),
    ("ve", 3),
)


def designs_dir() -> Path:
    from nanochat_tui import paths

    return paths.config_dir() / "designs"


def human(n: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.3g}"


def _cells(i: int, layer: Any) -> tuple[str, ...]:
    if layer.kind == "embedding":
        return (str(i), "embed", f"w={layer.width}", "", "", "", "", "")
    if layer.kind != "block":
        return (str(i), layer.kind, "", "", "", "", "", "")
    return (
        str(i),
        "block",
        str(layer.n_head or "?"),
        str(layer.n_kv_head or layer.n_head or "?"),
        str(layer.window or "full"),
        layer.mlp,
        str(layer.mlp_hidden or "auto"),
        "✓" if layer.value_embed else "",
    )


class DesignerPane(Widget):
    """Layer table, edit line, live estimates and validation problems."""

    DEFAULT_CSS = """
    DesignerPane { padding: 0 1; layout: vertical; }
    DesignerPane #designer-header { height: 1; }
    DesignerPane #designer-table { height: 1fr; min-height: 4; }
    DesignerPane #designer-edit { height: 1; margin: 0; }
    DesignerPane #designer-estimates { height: auto; }
    DesignerPane #designer-problems { height: auto; max-height: 6; }
    DesignerPane #designer-hint { height: 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add", "Add a transformer block", id="designer.add"),
        Binding("c", "duplicate", "Duplicate the selected layer", id="designer.duplicate"),
        Binding("x", "delete", "Delete the selected layer", id="designer.delete"),
        Binding("left_square_bracket", "move(-1)", "Move the layer up", id="designer.up"),
        Binding("right_square_bracket", "move(1)", "Move the layer down", id="designer.down"),
        Binding("e", "edit", "Edit the layer (field=value …)", id="designer.edit"),
        Binding("u", "undo", "Undo", id="designer.undo"),
        Binding("r", "redo", "Redo", id="designer.redo"),
        Binding(
            "t", "template", "Next template (nanochat d4/d12/d20, MoE)", id="designer.template"
        ),
        Binding("s", "save", "Save the design as JSON", id="designer.save"),
        Binding("o", "open", "Open a design JSON", id="designer.open"),
        Binding("p", "train", "Save as prefab and start a run from it", id="designer.train"),
        Binding("X", "export_onnx", "Export the forward pass as ONNX", id="designer.onnx"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.history: History | None = None
        self.preview: Design | None = None
        self.edit_error: str | None = None
        self.template_index = -1
        self.selected = 0

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Static("", id="designer-header")
        table: DataTable = DataTable(cursor_type="row", zebra_stripes=True, id="designer-table")
        for label, width in COLUMNS:
            table.add_column(label, width=width)
        yield table
        yield Input(
            placeholder="e: field=value … (n_head=4 mlp=swiglu window=256 · seq=64 vocab=512 "
            "experts=8 top_k=2 name=…)",
            id="designer-edit",
            compact=True,
        )
        yield Static("", id="designer-estimates")
        yield Static("", id="designer-problems")
        yield Static(Text(HINT), id="designer-hint")

    def on_mount(self) -> None:
        self.history = History(self._start_design())
        self.refresh_all()

    def initial_focus(self) -> Widget:
        return self.query_one(DataTable)

    @property
    def design(self) -> Design:
        return self.history.current

    def _base(self) -> Any:
        state = getattr(self.app, "state", None)
        if state is None:
            from nanochat_tui.config import load_prefab

            return load_prefab("tiny")
        return state.config

    def _start_design(self) -> Design:
        from nanochat_tui.bundled.designer.templates import template

        m = self._base().model
        return template("nanochat-d4", m.sequence_len, m.vocab_size)

    def _moe_enabled(self) -> bool:
        registry = getattr(self.app, "registry", None)
        sections = {c.section for c in registry.categories.values()} if registry else set()
        return "plugins.moe" in sections

    # ------------------------------------------------------------ drawing

    def refresh_all(self) -> None:
        table = self.query_one(DataTable)
        design = self.design
        table.clear()
        for i, layer in enumerate(design.layers):
            table.add_row(*_cells(i, layer), key=str(i))
        if design.layers:
            self.selected = max(0, min(self.selected, len(design.layers) - 1))
            table.move_cursor(row=self.selected)
        self.refresh_status(design)

    def refresh_status(self, design: Design) -> None:
        from nanochat_tui.bundled.designer.estimates import estimate

        moe = f" · moe {design.moe.num_experts}×top{design.moe.top_k}" if design.moe else ""
        header = Text()
        header.append(f"{design.name}", "bold")
        header.append(
            f" · {design.recipe} · seq {design.sequence_len} · vocab {design.vocab_size}"
            f" · {len(design.blocks)} blocks · width {design.width}{moe}"
        )
        if self.preview is not None:
            header.append("  (preview: enter applies)", "italic yellow")
        self.query_one("#designer-header", Static).update(header)
        found: list[Problem] = problems(design)
        lines = Text()
        if self.edit_error:
            lines.append(f"✗ edit: {self.edit_error}\n", "bold red")
        for p in found:
            lines.append(f"✗ {p}\n", "red")
        if not found and not self.edit_error:
            lines.append("✓ valid: compiles to a config the engine trains", "green")
        self.query_one("#designer-problems", Static).update(lines)
        est = Text()
        # an invalid preview keeps showing the applied design's numbers (when that one is valid)
        sized: Design | None = design
        if found:
            applied = self.design
            sized = applied if applied is not design and not problems(applied) else None
        if sized is not None:
            try:
                e = estimate(sized, self._base())
            except UserError as err:
                est.append(str(err.message), "red")
            else:
                active = (
                    f" ({human(e.active_params)} active)" if e.active_params != e.params else ""
                )
                if sized is not design:
                    est.append("applied design: ", "dim")
                est.append(f"params {human(e.params)}{active} · ")
                est.append(f"FLOPs/token {human(e.flops_per_token)} · memory/device ")
                est.append(f"CPU {human(e.memory['cpu'])}B · GPU {human(e.memory['gpu'])}B")
        self.query_one("#designer-estimates", Static).update(est)

    # ------------------------------------------------------------ edits

    def _commit(self, design: Design, selected: int | None = None) -> None:
        self.history.push(design)
        if selected is not None:
            self.selected = selected
        self.preview = None
        self.edit_error = None
        self.refresh_all()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.selected = event.cursor_row

    def action_add(self) -> None:
        self._commit(*ed.add_block(self.design, self.selected))

    def action_duplicate(self) -> None:
        if self.design.layers:
            self._commit(*ed.duplicate(self.design, self.selected))

    def action_delete(self) -> None:
        if self.design.layers:
            self._commit(*ed.delete(self.design, self.selected))

    def action_move(self, delta: int) -> None:
        if self.design.layers:
            self._commit(*ed.move(self.design, self.selected, delta))

    def action_undo(self) -> None:
        if not self.history.undo():
            self.notify("nothing to undo", severity="warning")
        self.refresh_all()

    def action_redo(self) -> None:
        if not self.history.redo():
            self.notify("nothing to redo", severity="warning")
        self.refresh_all()

    def action_edit(self) -> None:
        self.query_one("#designer-edit", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "designer-edit":
            return
        text = event.value.strip()
        try:
            self.preview = ed.apply_edit(self.design, self.selected, text) if text else None
            self.edit_error = None
        except ed.EditError as err:
            self.preview, self.edit_error = None, str(err)
        self.refresh_status(self.preview or self.design)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "designer-edit":
            return
        text = event.value.strip()
        try:
            design = ed.apply_edit(self.design, self.selected, text) if text else self.design
        except ed.EditError as err:
            self.edit_error = str(err)
            self.refresh_status(self.design)
            return
        event.input.value = ""
        self._commit(design)
        self.query_one(DataTable).focus()

    def action_template(self) -> None:
        from nanochat_tui.bundled.designer.templates import names, template

        choices = names(self._moe_enabled())
        self.template_index = (self.template_index + 1) % len(choices)
        d = self.design
        self._commit(template(choices[self.template_index], d.sequence_len, d.vocab_size), 0)
        self.notify(f"template {choices[self.template_index]}")

    # ------------------------------------------------------------ files

    def action_save(self) -> None:
        from nanochat_tui.bundled.designer.design import save

        path = save(self.design, designs_dir() / f"{self.design.name}.design.json")
        self.notify(f"saved {path}")

    def action_open(self) -> None:
        from nanochat_tui.tui.screens.prompt import PromptModal

        def done(text: str | None) -> None:
            if text:
                self.open_design(text)

        self.app.push_screen(
            PromptModal("Open design", help=f"a name in {designs_dir()} or a path"), done
        )

    def open_design(self, text: str) -> bool:
        """Load a design by name (the designs folder) or path; errors are notified."""
        from nanochat_tui.bundled.designer.design import load

        path = Path(text).expanduser()
        if not path.exists():
            path = designs_dir() / f"{text}.design.json"
        try:
            design = load(path)
        except UserError as err:
            self.notify(str(err), title="design not loaded", severity="error", timeout=8)
            return False
        self._commit(design, 0)
        return True

    # ------------------------------------------------------------ save as prefab and train

    def action_export_onnx(self) -> None:
        self.run_worker(
            self._export_onnx,
            thread=True,
            exclusive=True,
            group="designer-onnx",
            exit_on_error=False,
        )

    def _export_onnx(self) -> Path | None:
        """Build and write ``<designs>/<name>.onnx`` in a worker thread (JAX is imported here)."""
        from nanochat_tui.bundled.designer.onnx_export import export_design_onnx
        from nanochat_tui.config.loader import ConfigError

        design = self.design
        self.app.call_from_thread(self.notify, f"exporting {design.name} to ONNX …", timeout=3)
        try:
            path = export_design_onnx(design, self._base(), designs_dir() / f"{design.name}.onnx")
        except (UserError, ConfigError, OSError) as err:
            self.app.call_from_thread(
                self.notify, str(err), title="ONNX not written", severity="error", timeout=8
            )
            return None
        self.app.call_from_thread(self.notify, f"wrote {path}", timeout=6)
        return path

    def action_train(self) -> None:
        self.run_worker(self.save_and_train(), exclusive=True, group="designer-train")

    async def save_and_train(self, run_name: str | None = None) -> str | None:
        """Save the design as user prefab ``design-<name>``, make it the active config and start
        a run from it through the Runs pane (returns the prefab name, None when refused)."""
        from nanochat_tui.bundled.designer.design import compile_config, save
        from nanochat_tui.config.loader import ConfigError, save_prefab
        from nanochat_tui.orchestrator.runner import default_run_name
        from nanochat_tui.tui.messages import ConfigChanged

        design = self.design
        try:
            config = compile_config(design, self._base())
            name = f"design-{design.name}"
            config = config.model_copy(update={"name": name})
            save_prefab(config, name, overwrite=True)
        except (UserError, ConfigError, OSError) as err:
            self.notify(str(err), title="not saved", severity="error", timeout=8)
            return None
        save(design, designs_dir() / f"{design.name}.design.json")
        state = self.app.state
        state.set_prefab(name)
        self.post_message(ConfigChanged(state.config))
        await self.app.run_action("switch_pane('runs')")
        runs = self.app.active_pane_widget()
        runs.start(run_name or default_run_name(state.config))
        self.notify(f"prefab {name} saved; starting a run from it")
        return name
