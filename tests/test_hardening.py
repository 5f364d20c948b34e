"""Regression tests for the defects of issues 10 and 16 outside the fuzzed config path: closed
pipes, prefab listings, diffs, cross-field messages, strict overrides, plugins that exit, and a
run that cannot start."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from nanochat_tui import paths
from nanochat_tui.cli import main
from nanochat_tui.config import ConfigError, load_config, load_prefab, save_prefab
from nanochat_tui.plugin_host import get_registry, reset_registry
from nanochat_tui.registry import ENTRY_POINT_GROUP, Registry, load_plugin

pytestmark = pytest.mark.anyio


def test_listing_into_a_closed_pipe_exits_quietly(tmp_path):
    """`nanochat-tui config keys | head -1` crashed with BrokenPipeError and a crash dump."""
    env = {**os.environ, "NANOCHAT_TUI_HOME": str(tmp_path)}
    code = "import sys; from nanochat_tui.cli import main; sys.exit(main(sys.argv[1:]))"
    for argv in (["config", "keys"], ["config", "prefabs"], ["config", "show", "tiny"]):
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        proc.stdout.read(10)
        proc.stdout.close()  # the reader goes away, like `head`
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) in (0, 141), err
        assert "Traceback" not in err and "BrokenPipe" not in err and "crash" not in err, err
    assert not list((tmp_path / "data" / "logs").glob("crash/*"))


def test_config_prefabs_marks_origin_lists_broken_and_shows_empty_user_folder(capsys):
    assert main(["config", "prefabs"]) == 0
    out = capsys.readouterr().out
    assert f"user prefabs ({paths.user_prefabs_dir()}):" in out and "(none" in out
    assert "bundled prefabs (" in out and "  tiny " in out

    save_prefab(load_prefab("tiny"), "mine")
    user = paths.user_prefabs_dir()
    (user / "bad.yaml").write_text("model: [unclosed\n")
    (user / "worse.yaml").write_text("model:\n  depth: 0\n")
    assert main(["config", "prefabs"]) == 0
    out = capsys.readouterr().out
    user_part = out.split("user prefabs")[1]
    assert "mine" in user_part and "bad" in user_part and "worse" in user_part
    assert "bad            ✗ broken: " in user_part and "not valid YAML at line" in user_part
    assert "worse          ✗ broken: " in user_part and "model.depth" in user_part


def test_bundled_name_refused_on_save_and_a_shadowed_bundled_prefab_stays_reachable():
    with pytest.raises(ConfigError, match="'tiny' is a bundled prefab"):
        save_prefab(load_prefab("tiny"), "tiny")
    # a user file made by hand under a bundled name shadows it; the bundled one stays reachable
    (paths.user_prefabs_dir() / "tiny.yaml").write_text("name: tiny\nmodel:\n  depth: 4\n")
    assert load_prefab("tiny").model.depth == 4
    assert load_prefab("bundled:tiny").model.depth == 2


def test_config_diff_says_no_differences_and_diffs_two_prefabs(capsys):
    assert main(["config", "diff", "tiny"]) == 0
    assert "no differences" in capsys.readouterr().out
    assert main(["config", "diff", "tiny", "ten"]) == 0
    out = capsys.readouterr().out
    assert "model.depth: 2 -> 12" in out and "no differences" not in out
    assert main(["config", "diff", "tiny", "--set", "model.depth=3"]) == 0
    assert capsys.readouterr().out.strip() == "model.depth: 2 -> 3"


def test_cross_field_error_names_fields_not_the_whole_section():
    """It printed `(got {'depth': 2, 'aspect_ratio': 64, ...})`."""
    with pytest.raises(ConfigError) as err:
        load_config("tiny", ["model.head_dim=48"])
    message = str(err.value)
    assert "head_dim 48" in message and "model_dim 128" in message
    assert "{" not in message and "got" not in message


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("train.seed=no", "train.seed"),  # YAML 1.1 would make this False -> 0
        ("model.depth=on", "model.depth"),  # ... and this True -> 1
        ("telemetry.wandb.enabled=yes", "telemetry.wandb.enabled"),
        ("model.depth=0x10", "model.depth"),
        ("model.depth=4.0", "model.depth"),
        ("train.seed=99999999999999999999", "train.seed"),
        ("model.softcap=inf", "model.softcap"),
        ("optim.grad_clip=1e400", "optim.grad_clip"),
        ("model.rope_base=1e12", "model.rope_base"),
        ("train.target_param_data_ratio=1e9", "train.target_param_data_ratio"),
    ],
)
def test_overrides_are_strictly_typed_finite_and_in_range(override, field):
    with pytest.raises(ConfigError) as err:
        load_config("tiny", [override])
    assert field in str(err.value) and len(str(err.value)) < 300


def test_strict_overrides_still_take_what_people_type():
    cfg = load_config(
        "tiny",
        [
            "model.depth=3",
            "optim.matrix_lr=3e-2",
            "model.softcap=20",
            "telemetry.wandb.enabled=true",
        ],
    )
    assert cfg.model.depth == 3 and cfg.optim.matrix_lr == 0.03 and cfg.model.softcap == 20.0
    assert cfg.telemetry.wandb.enabled is True


# ---------------------------------------------------------------- plugins


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path for throwaway plugin modules; the registry is rebuilt after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    reset_registry()
    yield tmp_path
    reset_registry()


def _entry_points(monkeypatch, *specs: tuple[str, str]) -> None:
    eps = [EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in specs]
    monkeypatch.setattr("nanochat_tui.registry.entry_points", lambda group: eps)


def test_plugins_that_exit_or_raise_base_exceptions_are_disabled(plugin_dir, monkeypatch):
    (plugin_dir / "exits_on_import.py").write_text("raise SystemExit(3)\n")
    (plugin_dir / "half_registers.py").write_text(
        "class Odd(BaseException):\n    pass\n"
        "def register(registry):\n"
        "    registry.add_screen('half', 'Half', 'H', 'half_registers:Nothing')\n"
        "    raise Odd('gave up halfway')\n"
    )
    (plugin_dir / "fine.py").write_text(
        "def register(registry):\n    registry.add_panel('fine', 'fine:Panel', 'ok')\n"
    )
    _entry_points(
        monkeypatch,
        ("exiter", "exits_on_import:register"),
        ("half", "half_registers:register"),
        ("fine", "fine:register"),
    )
    registry = get_registry()
    assert "SystemExit" in registry.failed["exiter"]
    assert "gave up halfway" in registry.failed["half"]
    assert "half" not in registry.screens  # all or nothing
    assert "fine" in registry.panels and "config" in registry.screens


def test_a_real_ctrl_c_during_plugin_import_still_interrupts():
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        load_plugin(Registry(), "slow", interrupted)

    class LooksLikeCtrlC(KeyboardInterrupt):
        pass

    def fake():
        raise LooksLikeCtrlC

    assert "LooksLikeCtrlC" in load_plugin(Registry(), "fake", fake).failed["fake"]


async def test_tui_starts_with_a_plugin_that_exits(plugin_dir, monkeypatch):
    from nanochat_tui.tui.app import NanochatApp

    (plugin_dir / "exits_on_import.py").write_text("import sys\nsys.exit('bye')\n")
    _entry_points(monkeypatch, ("exiter", "exits_on_import:register"))
    app = NanochatApp(prefab="tiny")
    notes: list[str] = []
    monkeypatch.setattr(app, "notify", lambda message, **kwargs: notes.append(str(message)))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.is_running
        assert any("exiter" in note and "SystemExit" in note for note in notes), notes


def test_run_survives_a_plugin_that_exits_and_leaves_no_half_created_run_dir(
    plugin_dir, monkeypatch, capsys
):
    """`run` died with the plugin and left a run dir that `runs` did not list but whose name
    was taken. Now the plugin is disabled, the run gets as far as its own error (a missing data
    source), and the run dir is removed so the name is free."""
    (plugin_dir / "exits_on_import.py").write_text("raise SystemExit(3)\n")
    _entry_points(monkeypatch, ("exiter", "exits_on_import:register"))
    argv = ["run", "tiny", "--set", "data.source=/nonexistent/corpus", "--name", "taken", "--quiet"]
    for _ in range(2):  # the second try is not refused with "already exists"
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "data.source" in err and "already exists" not in err
        assert not (paths.runs_dir() / "taken").exists()
