"""The plugin API end to end: the example plugin under examples/ installed as a real distribution
(a ``.dist-info`` with entry_points.txt on sys.path, found by importlib.metadata), its category,
panel, CLI command and telemetry source; broken, colliding and disabled plugins; the Plugins pane."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from helpers import install
from nanochat_tui import paths
from nanochat_tui.cli import main
from nanochat_tui.config import ConfigError, load_config
from nanochat_tui.errors import UserError
from nanochat_tui.plugin_host import get_registry, reset_registry

pytestmark = pytest.mark.anyio
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hello_plugin"


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A site folder on sys.path holding the example plugin; the registry is rebuilt around."""
    root = tmp_path / "site"
    install(root, "nanochat-tui-hello", "0.1.0", {"hello": "nanochat_hello:register"})
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.syspath_prepend(str(root))
    reset_registry()
    yield root
    reset_registry()


def test_example_plugin_registers_everything_with_its_version(site):
    registry = get_registry()
    info = registry.plugins["hello"]
    assert (info.version, info.status) == ("0.1.0", "ok")
    assert info.registered == [
        "category Hello",
        "section plugins.hello",
        "panel hello",
        "command hello",
        "source hello",
    ]
    assert registry.panels["hello"].ref == "nanochat_hello.panel:HelloPanel"
    assert registry.plugins["moe"].status == "ok"  # the built-in plugin, through its entry point


def test_plugin_section_is_validated_when_a_prefab_loads(site):
    config = load_config("tiny", ["plugins.hello.greeting=hi"])
    assert config.plugins["hello"] == {"enabled": True, "greeting": "hi", "times": 1}
    with pytest.raises(ConfigError, match=r"plugins\.hello\.times: Input should be less"):
        load_config("tiny", ["plugins.hello.times=9"])
    with pytest.raises(ConfigError, match=r"unknown key 'plugins\.hello\.tims'"):
        load_config("tiny", ["plugins.hello.tims=2"])
    prefab = paths.user_prefabs_dir() / "greet.yaml"
    prefab.write_text("name: greet\nplugins:\n  hello: {times: 0}\n")
    with pytest.raises(ConfigError, match=r"plugins\.hello\.times"):
        load_config("greet")


def test_example_cli_command_and_plugins_listing(site, capsys):
    argv = ["hello", "tiny", "--set", "plugins.hello.greeting=hi", "--set", "plugins.hello.times=3"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == "hi hi hi"
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "hello 0.1.0  ok" in out and "    panel hello" in out and "    command hello" in out
    assert main(["plugins", "--json"]) == 0
    rows = {
        json.loads(line)["name"]: json.loads(line)
        for line in capsys.readouterr().out.split("\n")
        if line
    }
    assert rows["hello"]["registered"][2] == "panel hello"


def test_example_telemetry_source_is_polled_by_the_hub(site, tmp_path):
    from nanochat_tui.telemetry.hub import TelemetryHub, load_sources

    config = load_config("tiny", ["plugins.hello.greeting=hey"])
    sources = load_sources(tmp_path, config)
    seen: list[dict] = []
    hub = TelemetryHub(tmp_path, sources=sources, callbacks=[seen.append], poll_s=0.05)
    try:
        for _ in range(100):
            if any(e.get("source") == "hello" for e in seen):
                break
            time.sleep(0.05)
    finally:
        hub.close()
    said = [e for e in seen if e.get("source") == "hello"]
    assert len(said) == 1 and said[0]["message"] == "hey from a plugin"


async def test_example_panel_draws_from_a_store(site):
    from textual.app import App

    from nanochat_tui.config.schema import PanelSpec
    from nanochat_tui.panels.builtin import panel_class
    from nanochat_tui.panels.store import MetricStore

    store = MetricStore()
    config = {"plugins": {"hello": {"greeting": "hi", "times": 2}}}
    store.ingest(
        [{"type": "run_start", "config": config}, {"type": "step", "step": 7, "loss": 1.0}]
    )

    class Host(App):
        def compose(self):
            yield panel_class("hello")(PanelSpec(type="hello"))

    async with Host().run_test() as pilot:
        panel = pilot.app.query_one("HelloPanel")
        with store.lock:
            panel.update_from(store)
        await pilot.pause()
        assert "hi hi — step 7" in str(panel.query_one("#hello-body").render())


# ---------------------------------------------------------------- broken plugins


def test_broken_invalid_and_colliding_plugins_are_disabled_with_messages(site, capsys, monkeypatch):
    (site / "broken_import.py").write_text("import no_such_module_abc\n")
    (site / "raises.py").write_text("def register(registry):\n    raise RuntimeError('nope')\n")
    (site / "invalid.py").write_text(
        "def register(registry):\n    registry.add_panel('ok-panel', 'not a reference')\n"
    )
    (site / "collides.py").write_text(
        "def register(registry):\n"
        "    registry.add_panel('fine-panel', 'collides:P')\n"
        "    registry.add_panel('hello', 'collides:P')\n"
    )
    (site / "steals_key.py").write_text(
        "def register(registry):\n    registry.add_screen('mine', 'Mine', '1', 'steals_key:P')\n"
    )
    install(
        site,
        "broken-bunch",
        "2.0",
        {
            "broken": "broken_import:register",
            "raises": "raises:register",
            "invalid": "invalid:register",
            "steals": "steals_key:register",
        },
    )
    later = site.parent / "later-site"  # after hello's on sys.path, so it loads after hello
    install(later, "collider", "1.0", {"zcollides": "collides:register"})
    monkeypatch.setattr("sys.path", [*__import__("sys").path, str(later)])
    registry = get_registry()
    failed = registry.failed
    assert "ModuleNotFoundError" in failed["broken"]
    assert "RuntimeError: nope" in failed["raises"]
    assert "not 'package.module:attribute'" in failed["invalid"]
    assert "panel hello is already registered by plugin 'hello'" in failed["zcollides"]
    assert "key 1 is already registered by a built-in" in failed["steals"]
    assert "fine-panel" not in registry.panels  # all or nothing
    assert registry.plugins["hello"].status == "ok" and "hello" in registry.panels
    assert registry.plugins["raises"].version == "2.0"
    # the CLI still works and shows why
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "raises 2.0  failed: disabled (RuntimeError: nope)" in out
    assert main(["config", "show", "tiny"]) == 0


def test_a_plugin_command_named_like_a_builtin_is_left_out(site, capsys):
    (site / "runner.py").write_text(
        "class C:\n    def add_arguments(self, n, p): pass\n    def run(self, a): return 5\n"
        "COMMAND = C()\n"
        "def register(registry):\n    registry.add_command('run', 'runner:COMMAND')\n"
    )
    install(site, "runner", "1.0", {"runner": "runner:register"})
    assert main(["config", "keys"]) == 0
    captured = capsys.readouterr()
    assert "plugin runner: command run left out ('run' is a built-in command)" in captured.err


def test_disabling_a_plugin_in_the_user_config(site, capsys):
    assert main(["plugins", "disable", "hello"]) == 0
    assert "hello disabled" in capsys.readouterr().out
    reset_registry()
    registry = get_registry()
    assert registry.plugins["hello"].status == "disabled" and "hello" not in registry.panels
    # a config that switches the section on is refused at run start, with the way out
    from nanochat_tui.orchestrator.plugin_hooks import engine_hooks

    config = load_config("tiny", ["plugins.hello.times=2"])  # unclaimed: kept as written
    with pytest.raises(UserError, match=r"plugins\.hello, but that plugin is not loaded"):
        engine_hooks(config)
    assert main(["plugins", "enable", "hello"]) == 0
    reset_registry()
    assert get_registry().plugins["hello"].status == "ok"
    assert main(["plugins", "disable", "nope"]) == 2


async def test_plugins_pane_lists_plugins_and_failures(site):
    from nanochat_tui.tui.app import NanochatApp

    (site / "raises.py").write_text("def register(registry):\n    raise RuntimeError('nope')\n")
    install(site, "raises", "3.1", {"raises": "raises:register"})
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("P")
        for _ in range(50):
            await pilot.pause(0.05)
            if app.active_pane == "plugins":
                break
        table = app.query_one("#plugins-table")
        names = [table.get_row_at(i)[0] for i in range(table.row_count)]
        assert names == ["designer", "hello", "moe", "raises"]
        table.move_cursor(row=3)
        await pilot.pause()
        detail = str(app.query_one("#plugins-detail").render())
        assert "RuntimeError: nope" in detail
        await pilot.press("d")
        await pilot.pause()
    from nanochat_tui.plugin_host import disabled_plugins

    assert disabled_plugins()[0] == {"raises"}


class PluginsHost:
    """Just the Plugins pane (built lazily so the registry sees the test's site)."""

    @staticmethod
    def make():
        from textual.app import App

        from nanochat_tui.tui.screens.plugins import PluginsPane

        class Host(App):
            def compose(self):
                yield PluginsPane()

            def on_mount(self) -> None:
                self.theme = "textual-dark"

        return Host()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_plugins_pane_snapshot(snap_compare, site, size):
    (site / "raises.py").write_text("def register(registry):\n    raise RuntimeError('nope')\n")
    install(site, "raises", "3.1", {"raises": "raises:register"})

    async def highlight_failed(pilot):
        await pilot.pause()
        pilot.app.query_one("#plugins-table").move_cursor(row=2)
        await pilot.pause()

    assert snap_compare(PluginsHost.make(), terminal_size=size, run_before=highlight_failed)


async def test_browsing_a_plugin_category_does_not_switch_the_plugin_on(type_into):
    """The Config pane shows an absent plugin section's defaults (MoE: enabled true); tabbing
    through them must not create the section."""
    from nanochat_tui.tui.app import NanochatApp

    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(100):
            await pilot.pause(0.05)
            if app.query("#f-model--depth"):
                break
        app.query_one("#categories").focus()
        await pilot.press("end")
        for _ in range(40):
            await pilot.pause(0.05)
            if app.query("#f-plugins--moe--enabled"):
                break
        await pilot.press("tab", "tab", "tab", "tab")
        await pilot.pause()
        assert app.state.config.plugins == {} and app.state.overrides == {}
        await type_into(pilot, "#f-plugins--moe--num_experts", "4")
        assert app.state.config.plugins["moe"]["num_experts"] == 4
        assert app.state.config.plugins["moe"]["enabled"] is True
