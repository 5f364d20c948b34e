"""The one registry: every built-in row resolves to what its kind promises, a plugin can add one
of each kind through the same calls, and a bad registration disables the plugin with a reason."""

from __future__ import annotations

import argparse

import pytest

from helpers import install
from nanochat_tui.builtins import BUILTINS
from nanochat_tui.plugin_host import reset_registry
from nanochat_tui.registry import (
    CategoryEntry,
    CommandEntry,
    EvalPresetEntry,
    ExportFormatEntry,
    PanelEntry,
    Registry,
    ScreenEntry,
    StageEntry,
    load_plugin,
    resolve,
)


def _builtin_registry() -> Registry:
    registry = Registry()
    for entry in BUILTINS:
        registry.add(entry)
    return registry


def test_every_built_in_row_resolves_to_its_kind():
    from textual.widget import Widget

    from nanochat_tui.jax_engine.tasks import Task
    from nanochat_tui.panels.base import Panel

    registry = _builtin_registry()
    kinds = {type(e) for e in BUILTINS}
    assert kinds == {
        CategoryEntry, ScreenEntry, PanelEntry, CommandEntry, StageEntry, ExportFormatEntry,
        EvalPresetEntry,
    }  # fmt: skip
    for screen in registry.screens.values():
        assert issubclass(resolve(screen.ref), Widget), screen
    for panel in registry.panels.values():
        assert issubclass(resolve(panel.ref), Panel), panel
    for command in registry.commands.values():
        handler = resolve(command.ref)
        handler.add_arguments(command.name, argparse.ArgumentParser())
        assert callable(handler.run), command
    for stage in registry.stages.values():
        cls = resolve(stage.ref)
        assert issubclass(cls, Task) and cls.stage == stage.name
    for fmt in registry.export_formats.values():
        assert callable(resolve(fmt.write)) and callable(resolve(fmt.check)), fmt
    from nanochat_tui.config.schema import Config

    sections = {c.section for c in registry.categories.values()}
    assert sections <= set(Config.model_fields)


def test_a_plugin_adds_one_of_each_kind_through_the_same_calls():
    def register(registry):
        registry.add_stage("toy", "toy_stage.task:CountTask", "a toy")
        registry.add_export_format("gguf", "mod:write", "mod:check", "llama.cpp")
        registry.add_eval_preset("haiku", "Write a haiku about rain.", "chat")
        registry.add_source("beat", "mod:factory")
        registry.add_command("hello", "mod:COMMAND", "say hello")

    registry = load_plugin(_builtin_registry(), "kit", lambda: register)
    assert registry.plugins["kit"].registered == [
        "stage toy", "export format gguf", "eval preset haiku", "source beat", "command hello",
    ]  # fmt: skip
    assert registry.export_formats["gguf"].description == "llama.cpp"
    assert registry.eval_presets["haiku"].mode == "chat"


BAD = {
    "taken stage": (lambda r: r.add_stage("sft", "mod:Task"), "stage sft is already registered"),
    "taken format": (
        lambda r: r.add_export_format("hf", "mod:w", "mod:c"),
        "export format hf is already registered by a built-in",
    ),
    "preset mode": (lambda r: r.add_eval_preset("x", "hi", "shout"), "must be complete or chat"),
    "empty prompt": (lambda r: r.add_eval_preset("x", "  "), "prompt must be non-empty text"),
    "stage name": (lambda r: r.add_stage("Big", "mod:Task"), "stage name 'Big' must be lower"),
    "format ref": (
        lambda r: r.add_export_format("gguf", "mod:w", "no reference"),
        "'no reference' is not 'package.module:attribute'",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_registration_disables_the_plugin_with_the_reason(case):
    call, reason = BAD[case]

    def register(registry):
        registry.add_eval_preset("kept-if-fine", "hello")
        call(registry)

    registry = load_plugin(_builtin_registry(), "bad", lambda: register)
    assert reason in registry.failed["bad"]
    assert "kept-if-fine" not in registry.eval_presets  # all or nothing


def test_plugin_export_formats_and_eval_presets_reach_the_cli_and_the_chat_pane(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "kit.py").write_text(
        "def register(registry):\n"
        "    registry.add_export_format('gguf', 'kit:write', 'kit:check', 'for llama.cpp')\n"
        "    registry.add_eval_preset('haiku', 'Write a haiku about rain.', 'chat')\n"
    )
    install(tmp_path, "kit", "1.0", {"kit": "kit:register"})
    monkeypatch.syspath_prepend(str(tmp_path))
    reset_registry()
    try:
        from nanochat_tui.cli import main
        from nanochat_tui.eval_presets import load_presets

        with pytest.raises(SystemExit):
            main(["export", "--help"])
        assert "{hf,onnx,nanochat,gguf}" in capsys.readouterr().out
        names = [p.name for p in load_presets()]  # a fresh home: the defaults are written
        assert names == ["capital", "python-def", "stdlib-doc", "greeting", "why-sky", "haiku"]
    finally:
        reset_registry()
