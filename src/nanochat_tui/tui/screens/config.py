"""Config pane: pick a prefab, edit fields by category (validated as you type), see the diff
against the prefab and the compatibility matrix, save as a new prefab."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ValidationError
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Input, Label, OptionList, Select, Static

from nanochat_tui.config import ConfigError, diff, machine, save_prefab
from nanochat_tui.config.estimates import (
    CPU_MFU_RANGE,
    DEFAULT_MFU,
    compatibility_matrix,
    flops_per_token,
    num_params,
    total_tokens,
)
from nanochat_tui.config.loader import (
    PrefabEntry,
    bundled_prefab_names,
    field_info,
    get_value,
    known_keys,
    parse_value,
    scan_prefabs,
)
from nanochat_tui.errors import UserError
from nanochat_tui.registry import CategoryEntry, resolve
from nanochat_tui.tui.messages import ConfigChanged

log = logging.getLogger("nanochat_tui.tui.config")


# ---------------------------------------------------------------- formatting helpers


def format_value(value: Any) -> str:
    """How a config value reads in an Input (and parses back with config.loader.parse_value)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)


def human(n: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.3g}"


def human_hours(hours: float) -> str:
    if hours < 1 / 60:
        return f"{hours * 3600:.0f}s"
    if hours < 1:
        return f"{hours * 60:.0f}m"
    if hours < 48:
        return f"{hours:.1f}h"
    if hours < 2 * 8766:
        return f"{hours / 24:.1f}d"
    return f"{hours / 8766:.0f}y"


def human_range(low: float, high: float) -> str:
    """'2–4m', '50m–1.2h', or one value when both ends read the same."""
    a, b = human_hours(low), human_hours(high)
    if a == b:
        return a
    return f"{a[:-1]}–{b}" if a[-1] == b[-1] else f"{a}–{b}"


def prefab_label(entry: PrefabEntry) -> Text:
    """'tiny  bundled', 'mine  user', '✗ bad  broken' for the picker."""
    if entry.error:
        return Text.assemble(("✗ ", "red"), entry.name, ("  broken", "red"))
    return Text.assemble(entry.name, (f"  {entry.origin}", "dim"))


def field_id(dotted: str) -> str:
    return "f-" + dotted.replace(".", "--")


def estimates_renderable(config: Any, cpu: machine.CpuProfile | None = None) -> Table:
    """Est. wall time (this CPU's as a range) and cost per accelerator at the assumed MFU (stated
    under the table), the memory one device needs (red when it does not fit), and the mesh:
    data×fsdp, sequences per device (b/dev) and per mesh (glob) in one micro-batch, micro-batches
    per step (acc); ✗ when ``mesh.*`` or the batch does not divide on that hardware. ``cpu`` is
    the profile to use (``pending``: 'measuring…' in its time and cost)."""
    table = Table(box=None, expand=False, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("hardware", no_wrap=True)
    for header in ("time", "cost", "mem/dev", "mesh", "b/dev", "glob", "acc"):
        table.add_column(header, justify="right", no_wrap=True, min_width=len(header))
    for est in compatibility_matrix(config, cpu):
        memory = Text(f"{est.memory / 2**30:.3g}G", style="" if est.fits else "bold red")
        lay = est.layout
        mesh = (
            [lay.label, str(lay.device_batch), str(lay.global_batch), str(lay.accum)]
            if lay
            else [Text("✗", style="bold red"), "", "", ""]
        )
        if est.hours == float("inf"):  # the CPU's rate is being measured
            time, cost = Text("…", "dim"), Text("…", "dim")
        else:
            time, cost = human_range(est.hours_low, est.hours_high), f"${est.cost:,.0f}"
        table.add_row(est.accelerator, time, cost, memory, *mesh)
    return table


def estimates_summary(config: Any) -> Text:
    return Text.assemble(
        ("params ", "dim"),
        human(num_params(config.model)),
        (" · tokens ", "dim"),
        human(total_tokens(config)),
        no_wrap=True,
        overflow="ellipsis",
    )


def mfu_note(config: Any, cpu: machine.CpuProfile | None = None, measuring: bool = False) -> Text:
    """Total FLOPs and the assumed MFU; instead, while this CPU's rate is measured or when it
    should be measured again (taken while busy, a week old, noisy), which and why."""
    if cpu is not None and (cpu.pending or cpu.stale):
        why = "measuring this CPU's matmul rate…" if cpu.pending else f"CPU rate {cpu.stale}"
        if cpu.stale:
            why += "; measuring again…" if measuring else "; measured again next start"
        return Text(why, "yellow", no_wrap=True, overflow="ellipsis")
    flops = flops_per_token(config.model) * total_tokens(config)
    low, high = CPU_MFU_RANGE
    return Text.assemble(
        f"{flops:.1e}".replace("e+", "e"),
        (f" FLOPs · MFU {DEFAULT_MFU:.0%} assumed (CPU {low * 100:.0f}–{high:.0%})", "dim"),
        no_wrap=True,
        overflow="ellipsis",
    )


# ---------------------------------------------------------------- fields


def category_fields(entry: CategoryEntry, config: Any) -> list[tuple[str, str, Any]]:
    """(dotted key, description, current value) for every field of one category."""
    out = []
    if entry.section.startswith("plugins."):
        name = entry.section.split(".", 1)[1]
        current = config.plugins.get(name, {})
        model = _plugin_model(entry)
        if model is None:
            return [(f"{entry.section}.{k}", "", v) for k, v in current.items()]
        for fname, finfo in model.model_fields.items():
            default = None if finfo.is_required() else finfo.get_default(call_default_factory=True)
            out.append(
                (f"{entry.section}.{fname}", finfo.description or "", current.get(fname, default))
            )
        return out
    for key in known_keys():
        if key.startswith(entry.section + "."):
            info = field_info(key)
            out.append((key, (info.description or "") if info else "", get_value(config, key)))
    return out


def _plugin_model(entry: CategoryEntry) -> type[BaseModel] | None:
    if not entry.ref:
        return None
    try:
        model = resolve(entry.ref)
    except Exception:
        return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


class FieldRow(Horizontal):
    """key · Input · description or the validation error."""

    def __init__(self, dotted: str, short: str, description: str, value: Any) -> None:
        super().__init__(classes="field-row")
        self.dotted = dotted
        self.short = short
        self.description = description
        self.value = value

    def compose(self) -> ComposeResult:
        yield Label(self.short, classes="field-key")
        yield Input(
            format_value(self.value), id=field_id(self.dotted), compact=True, classes="field-input"
        )
        yield Static(self._description_text(), classes="field-msg")

    def _description_text(self) -> Text:
        return Text(self.description, "dim", no_wrap=True, overflow="ellipsis")

    def show_error(self, error: str | None) -> None:
        msg = self.query_one(".field-msg", Static)
        inp = self.query_one(Input)
        inp.set_class(error is not None, "-invalid")
        self.set_class(error is not None, "-error")
        msg.update(Text("✗ " + error, "bold red") if error else self._description_text())


# ---------------------------------------------------------------- save-as modal


class SavePrefabScreen(ModalScreen[str | None]):
    """Ask for a prefab name; dismisses with it (or None on escape)."""

    DEFAULT_CSS = """
    SavePrefabScreen { align: center middle; }
    SavePrefabScreen > Vertical {
        width: 56; max-width: 95%; height: auto; padding: 0 1;
        border: round $accent; background: $surface;
    }
    SavePrefabScreen #save-error { color: $error; height: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="save_prefab.cancel")
    ]

    def __init__(self, suggestion: str) -> None:
        super().__init__()
        self.suggestion = suggestion

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Save as prefab"
            yield Label("Name (letters, digits, - _ .); enter saves, esc cancels")
            yield Input(self.suggestion, id="save-name")
            yield Static("", id="save-error")

    def on_mount(self) -> None:
        self.query_one("#save-name", Input).focus()

    @on(Input.Submitted, "#save-name")
    def submitted(self, event: Input.Submitted) -> None:
        event.stop()
        name = event.value.strip()
        error = self.query_one("#save-error", Static)
        if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
            error.update("use only letters, digits, '-', '_' and '.'")
            return
        if name in bundled_prefab_names():
            error.update(f"'{name}' is a bundled prefab; pick another name (e.g. {name}-custom)")
            return
        self.dismiss(name)

    def action_cancel(self) -> None:
        self.dismiss(None)


# ---------------------------------------------------------------- the pane


class ConfigPane(Widget):
    """Prefab picker, categorised fields, overrides diff, estimates."""

    DEFAULT_CSS = """
    ConfigPane { layout: vertical; }
    ConfigPane #cfg-top { height: 1; }
    ConfigPane #cfg-top Label { width: auto; padding: 0 1 0 0; color: $text-muted; }
    ConfigPane #prefab { width: 22; }
    ConfigPane #prefab-desc { width: 1fr; color: $text-muted; padding-left: 1; }
    ConfigPane #cfg-body { height: 1fr; }
    ConfigPane #categories { width: 16; border: none; padding: 0; background: $surface; }
    ConfigPane #fields { width: 1fr; padding: 0 0 0 1; }
    ConfigPane .cat-header { color: $accent; text-style: bold; margin-top: 1; }
    ConfigPane .cat-header.first { margin-top: 0; }
    ConfigPane .field-row { height: auto; }
    ConfigPane .field-key { width: 18; color: $text; }
    ConfigPane .field-input { width: 12; }
    ConfigPane .field-input.-invalid { color: $error; }
    ConfigPane .field-msg { width: 1fr; padding-left: 1; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    ConfigPane .field-row.-error .field-msg { height: auto; text-wrap: wrap; }
    ConfigPane #est-mfu, ConfigPane #est-summary { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    ConfigPane #cfg-bottom { height: 10; }
    ConfigPane #diff-box { width: 1fr; border: round $primary; padding: 0 1; }
    ConfigPane #diff-box:focus { border: round $accent; background-tint: $foreground 5%; }
    ConfigPane #est-box { width: 66; border: round $primary; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save_as", "Save as prefab", id="config.save_as"),
        Binding("ctrl+r", "reset", "Reset all overrides", id="config.reset"),
        Binding("ctrl+o", "pick_prefab", "Pick prefab", id="config.pick_prefab"),
        Binding("ctrl+l", "launch", "Launch on a cloud (SkyPilot)", id="config.launch"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.categories: list[CategoryEntry] = []
        self.current_category = -1
        self.cpu: machine.CpuProfile | None = None  # None: not measured yet
        self.cpu_error: UserError | None = None  # a NANOCHAT_TUI_CPU_PROFILE that does not read
        self.measuring_cpu = False

    # ------------------------------------------------------------ compose

    @property
    def state(self) -> Any:
        return self.app.state

    def compose(self) -> ComposeResult:
        registry = getattr(self.app, "registry", None)
        self.categories = list(registry.categories.values()) if registry else []
        with Horizontal(id="cfg-top"):
            yield Label("Prefab")
            yield Select(
                self._prefab_options(),
                value=self._select_value(),
                allow_blank=False,
                compact=True,
                id="prefab",
            )
            yield Static("", id="prefab-desc")
        with Horizontal(id="cfg-body"):
            yield OptionList(*[c.title for c in self.categories], id="categories")
            with VerticalScroll(id="fields", can_focus=False):  # its inputs are the tab stops
                yield from self._category_widgets(0)
        with Horizontal(id="cfg-bottom"):
            with VerticalScroll(id="diff-box") as box:
                box.border_title = "Overrides vs prefab"
                yield Static("", id="diff")
            with Vertical(id="est-box") as box:
                box.border_title = "Estimates"
                yield Static("", id="est-summary")
                yield Static("", id="estimates")
                yield Static("", id="est-mfu")

    def on_mount(self) -> None:
        try:
            self.cpu = machine.cached_profile()  # the cache only: measuring is the worker's
        except UserError as err:
            self.cpu_error = err
        if self.cpu_error is None and (self.cpu is None or self.cpu.stale):
            self.measuring_cpu = True
            self.measure_cpu()
        self.refresh_views()

    @work(thread=True, exclusive=True, group="cpu-rate")
    def measure_cpu(self) -> None:
        """This CPU's matmul rate (machine.cpu_profile: timed, cached), off the UI thread."""
        try:
            profile, error = machine.cpu_profile(), None
        except UserError as err:
            profile, error = None, err
        self.app.call_from_thread(self._cpu_measured, profile, error)

    def _cpu_measured(self, profile: machine.CpuProfile | None, error: UserError | None) -> None:
        self.cpu, self.cpu_error, self.measuring_cpu = profile, error, False
        self.refresh_views()

    def _category_widgets(self, index: int) -> list[Widget]:
        """Header + one FieldRow per field of category ``index`` (only one category is mounted:
        ~10 rows instead of ~60 keeps the first frame fast)."""
        if not self.categories:
            return [Static("no config categories registered", classes="cat-header first")]
        entry = self.categories[index]
        widgets: list[Widget] = [
            Static(f"{entry.title}  ({entry.section})", classes="cat-header first")
        ]
        for dotted, description, value in category_fields(entry, self.state.config):
            widgets.append(FieldRow(dotted, dotted[len(entry.section) + 1 :], description, value))
        self.current_category = index
        return widgets

    async def show_category(self, index: int) -> None:
        if index == self.current_category or not (0 <= index < len(self.categories)):
            return
        fields = self.query_one("#fields", VerticalScroll)
        await fields.remove_children()
        await fields.mount_all(self._category_widgets(index))
        fields.scroll_home(animate=False)

    def initial_focus(self) -> Widget:
        return self.query_one("#categories", OptionList)

    def _prefab_options(self) -> list[tuple[Text, str]]:
        """Bundled, then user prefabs, each marked; broken files marked ✗ (choosing one shows
        why it does not load)."""
        options = [(prefab_label(entry), entry.name) for entry in scan_prefabs()]
        if self.state.prefab_name not in {value for _label, value in options}:
            options.append((Text(self.state.prefab_name), self.state.prefab_name))
        return options

    def sync_prefab_select(self) -> None:
        """Show state.prefab_name in the picker without it reporting a (user) change."""
        select = self.query_one("#prefab", Select)
        with select.prevent(Select.Changed):
            select.set_options(self._prefab_options())
            select.value = self.state.prefab_name

    def _select_value(self) -> str:
        return self.state.prefab_name

    # ------------------------------------------------------------ views

    def refresh_views(self) -> None:
        """Diff, estimates, prefab description from app.state."""
        config = self.state.config
        rows = diff(self.state.base_config, config)
        text = Text()
        for key, old, new in rows:
            text.append(key, "bold")
            text.append(f": {format_value(old) or '∅'} → ", "dim")
            text.append(f"{format_value(new) or '∅'}\n", "green")
        if not rows:
            text.append(f"none — '{self.state.prefab_name}' as saved", "dim")
        self.query_one("#diff", Static).update(text)
        self.query_one("#diff-box").border_title = f"Overrides vs prefab ({len(rows)})"
        try:
            if self.cpu_error is not None:
                raise self.cpu_error
            cpu = self.cpu or machine.pending_profile()
            self.query_one("#est-summary", Static).update(estimates_summary(config))
            self.query_one("#estimates", Static).update(estimates_renderable(config, cpu))
            self.query_one("#est-mfu", Static).update(mfu_note(config, cpu, self.measuring_cpu))
        except Exception as err:  # estimates must never take the pane down
            self.query_one("#estimates", Static).update(f"estimates unavailable: {err}")
        desc = self.state.base_config.description.strip()
        hardware = self.state.base_config.hardware
        self.query_one("#prefab-desc", Static).update(
            Text(f"{hardware} — {desc}" if hardware else desc, no_wrap=True, overflow="ellipsis")
        )

    def reload_fields(self) -> None:
        """Put the current config's values back into the shown Inputs and clear errors."""
        if 0 <= self.current_category < len(self.categories):
            entry = self.categories[self.current_category]
            for dotted, _desc, value in category_fields(entry, self.state.config):
                found = self.query(f"#{field_id(dotted)}")
                if found:
                    found.first(Input).value = format_value(value)
        for row in self.query(FieldRow):
            row.show_error(None)

    # ------------------------------------------------------------ edits

    @on(Input.Changed, ".field-input")
    def field_changed(self, event: Input.Changed) -> None:
        event.stop()
        row = event.input.parent
        if not isinstance(row, FieldRow):
            return
        error = self.apply_edit(row.dotted, event.value)
        row.show_error(error)

    def apply_edit(self, dotted: str, raw: str) -> str | None:
        """Validate one edit against prefab + other overrides; apply it when valid."""
        current = self._current_value(dotted)
        if raw == format_value(current):
            return None
        try:
            value = parse_value(raw)
        except ConfigError as err:  # nested too deep, too long
            return _short_error(str(err), dotted)
        if dotted.startswith("plugins."):
            error = self._plugin_error(dotted, value)
            if error:
                return error
        try:
            self.state.set_override(dotted, value)
        except ConfigError as err:
            return _short_error(str(err), dotted)
        log.debug("config edit %s (valid)", dotted)
        self.refresh_views()
        self.post_message(ConfigChanged(self.state.config))
        return None

    def _current_value(self, dotted: str) -> Any:
        try:
            return get_value(self.state.config, dotted)
        except (AttributeError, KeyError):
            pass
        # a plugin field of a section the config does not have shows its default: leaving it
        # unchanged must not create the section (that would switch the plugin on)
        if dotted.startswith("plugins."):
            section = dotted.rsplit(".", 1)[0]
            entry = next((c for c in self.categories if c.section == section), None)
            for key, _desc, value in category_fields(entry, self.state.config) if entry else []:
                if key == dotted:
                    return value
        return None

    def _plugin_error(self, dotted: str, value: Any) -> str | None:
        _, name, fname = dotted.split(".", 2)
        entry = next((c for c in self.categories if c.section == f"plugins.{name}"), None)
        model = _plugin_model(entry) if entry else None
        if model is None:
            return None
        section = dict(self.state.config.plugins.get(name, {}))
        section[fname] = value
        try:
            model.model_validate(section)
        except ValidationError as err:
            first = err.errors()[0]
            return first["msg"].removeprefix("Value error, ")
        return None

    # ------------------------------------------------------------ prefab switch

    @on(Select.Changed, "#prefab")
    def prefab_selected(self, event: Select.Changed) -> None:
        event.stop()
        name = event.value
        if not isinstance(name, str) or name == self.state.prefab_name:
            return
        if not self.state.overrides:
            self._switch_prefab(name)
            return
        from nanochat_tui.tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self._switch_prefab(name)
            else:
                self.sync_prefab_select()

        count = len(self.state.overrides)
        self.app.push_screen(
            ConfirmScreen(f"Switch to prefab '{name}' and drop {count} override(s)?"), answered
        )

    def _switch_prefab(self, name: str) -> None:
        try:
            self.state.set_prefab(name)
        except ConfigError as err:
            self.app.notify(str(err), severity="error", timeout=8)
            self.sync_prefab_select()
            return
        log.info("prefab %s selected", name)
        self.reload_fields()
        self.refresh_views()
        self.post_message(ConfigChanged(self.state.config))

    # ------------------------------------------------------------ actions

    def action_pick_prefab(self) -> None:
        select = self.query_one("#prefab", Select)
        select.focus()
        select.action_show_overlay()

    def action_launch(self) -> None:
        """The Launch screen on this config: cost and time, the SkyPilot task, confirm."""
        from nanochat_tui.tui.screens.launch import LaunchScreen

        self.app.push_screen(LaunchScreen(self.state.config, self.state.prefab_name))

    def action_reset(self) -> None:
        if not self.state.overrides:
            self.app.notify("no overrides to reset", timeout=3)
            return
        from nanochat_tui.tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.state.clear_overrides()
                self.reload_fields()
                self.refresh_views()
                self.post_message(ConfigChanged(self.state.config))

        self.app.push_screen(
            ConfirmScreen(f"Drop all {len(self.state.overrides)} override(s)?"), answered
        )

    def action_save_as(self) -> None:
        if self.query(".field-row.-error"):
            self.app.notify(
                "fix the fields marked ✗ first (they are not applied)", severity="warning"
            )
        base = self.state.prefab_name.removeprefix("bundled:")
        suggestion = base if base not in bundled_prefab_names() else f"{base}-custom"
        self.app.push_screen(SavePrefabScreen(suggestion), self._save_named)

    def _save_named(self, name: str | None, overwrite: bool = False) -> None:
        if not name:
            return
        try:
            path = save_prefab(self.state.config, name, overwrite=overwrite)
        except FileExistsError:
            from nanochat_tui.tui.screens.confirm import ConfirmScreen

            def answered(yes: bool | None) -> None:
                if yes:
                    self._save_named(name, overwrite=True)

            self.app.push_screen(ConfirmScreen(f"Prefab '{name}' exists. Overwrite it?"), answered)
            return
        except (ConfigError, OSError) as err:
            self.app.notify(f"could not save prefab: {err}", severity="error", timeout=8)
            return
        self.state.set_prefab(name)
        self.sync_prefab_select()
        self.reload_fields()
        self.refresh_views()
        log.info("saved prefab %s to %s", name, path)
        self.app.notify(f"saved prefab '{name}' → {path}", timeout=5)
        self.post_message(ConfigChanged(self.state.config))

    @on(OptionList.OptionHighlighted, "#categories")
    async def category_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        await self.show_category(event.option_index)

    def jump_to_category(self, index: int) -> None:
        """Show a category's fields (palette and keys); the list highlight follows."""
        self.query_one("#categories", OptionList).highlighted = index

    def on_config_changed(self, message: ConfigChanged) -> None:
        """Another pane changed the config (e.g. adopting a checkpoint's config)."""
        if message.broadcast:
            self.sync_prefab_select()
            self.reload_fields()
            self.refresh_views()

    def palette_commands(self) -> list[tuple[str, str, Any]]:
        cmds = [
            (
                "Save config as prefab…",
                "write a user prefab (asks before overwriting)",
                self.action_save_as,
            ),
            ("Reset overrides", "back to the prefab as saved (asks first)", self.action_reset),
            ("Pick prefab…", "choose a bundled or user prefab", self.action_pick_prefab),
        ]
        for i, entry in enumerate(self.categories):
            cmds.append(
                (
                    f"Go to {entry.title} settings",
                    f"section {entry.section}",
                    lambda i=i: self.jump_to_category(i),
                )
            )
        return cmds


def _short_error(message: str, dotted: str) -> str:
    """'invalid config in overrides: model.depth: Input should be ... (got 0)' -> the useful part."""
    for prefix in ("invalid config in overrides: ", "invalid config: ", "invalid override: "):
        message = message.removeprefix(prefix)
    return message.replace(f"{dotted}: ", "", 1) if message.startswith(f"{dotted}: ") else message
