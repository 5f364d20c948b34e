"""Every built-in extension in one table, registered exactly as a plugin's would be.

Rows are plain data: each names its code as a ``"module:attribute"`` string that is imported only
when used (a pane opens, a panel draws, a run starts), so this module imports nothing but the
registry and reading it costs nothing at start-up. A new built-in pane, panel, config category,
CLI command, training stage, export format or eval preset is its own file plus one row here.
"""

from __future__ import annotations

from nanochat_tui.registry import (
    CategoryEntry,
    CommandEntry,
    Entry,
    EvalPresetEntry,
    ExportFormatEntry,
    PanelEntry,
    ScreenEntry,
    StageEntry,
)

_TUI = "nanochat_tui.tui.screens"
_PANELS = "nanochat_tui.panels"
_CMD = "nanochat_tui.commands"
_TASKS = "nanochat_tui.jax_engine.tasks"
_EXPORT = "nanochat_tui.export"

BUILTINS: tuple[Entry, ...] = (
    # config categories: title -> top-level section (plugins add "plugins.<name>" ones)
    CategoryEntry("Core model", "model"),
    CategoryEntry("Data", "data"),
    CategoryEntry("Optimization", "optim"),
    CategoryEntry("Training", "train"),
    CategoryEntry("Devices", "mesh"),
    CategoryEntry("Run", "run"),
    CategoryEntry("Alignment", "align"),
    CategoryEntry("Preferences", "pref"),
    CategoryEntry("Telemetry", "telemetry"),
    # panes: name, tab title, key, class, order
    ScreenEntry("config", "Config", "1", f"{_TUI}.config:ConfigPane", order=10),
    ScreenEntry("checkpoints", "Checkpoints", "2", f"{_TUI}.checkpoints:CheckpointsPane", 20),
    ScreenEntry("chat", "Chat", "3", f"{_TUI}.chat:ChatPane", order=30),
    ScreenEntry("runs", "Runs", "4", f"{_TUI}.runs:RunsPane", order=40),
    ScreenEntry("live", "Live", "5", f"{_TUI}.live:LivePane", order=50),
    ScreenEntry("auth", "Auth", "6", f"{_TUI}.auth:AuthPane", order=60),
    ScreenEntry("soul", "SOUL", "7", f"{_TUI}.soul:SoulPane", order=65),
    ScreenEntry("compare", "Compare", "8", f"{_TUI}.compare:ComparePane", order=70),
    ScreenEntry("evals", "Evals", "9", f"{_TUI}.evals:EvalsPane", order=75),
    ScreenEntry("plugins", "Plugins", "P", f"{_TUI}.plugins:PluginsPane", order=90),
    # live panel types for ui.screens[].panels[]
    PanelEntry(
        "progress", f"{_PANELS}.builtin:ProgressPanel", "step bar, tokens, tok/s, ETA, elapsed"
    ),
    PanelEntry(
        "loss", f"{_PANELS}.builtin:LossPanel", "training loss (+components), EMA smoothing option"
    ),
    PanelEntry(
        "validation", f"{_PANELS}.builtin:ValidationPanel", "validation bpb over time + last value"
    ),
    PanelEntry("samples", f"{_PANELS}.builtin:SamplesPanel", "latest eval samples"),
    PanelEntry("device", f"{_PANELS}.builtin:DevicePanel", "MFU, device memory, host CPU/RAM"),
    PanelEntry("timers", f"{_PANELS}.builtin:TimersPanel", "data wait / compute / host breakdown"),
    PanelEntry(
        "preferences",
        f"{_PANELS}.preferences:PreferencesPanel",
        "reward margins/accuracies (dpo, orpo, simpo), best/worst held-out pairs",
    ),
    # CLI subcommands: modules with add_arguments(name, parser) and run(args), imported when used
    CommandEntry("tui", f"{_CMD}.tui_cmd", "open the TUI (the default with no subcommand)"),
    CommandEntry(
        "run", f"{_CMD}.train_cmd", "train a prefab headless (progress bar), or --detach it"
    ),
    CommandEntry(
        "launch", f"{_CMD}.launch_cmd", "train a prefab on a cloud with SkyPilot (extra: cloud)"
    ),
    CommandEntry("chat", f"{_CMD}.infer_cmd", "chat with a checkpoint in the terminal (streaming)"),
    CommandEntry(
        "eval", f"{_CMD}.infer_cmd", "print val bpb and sample continuations of a checkpoint"
    ),
    CommandEntry("runs", f"{_CMD}.runs_cmd", "list runs and their status"),
    CommandEntry("control", f"{_CMD}.runs_cmd", "checkpoint / stop / patch a running run"),
    CommandEntry(
        "config", f"{_CMD}.config_cmd", "show prefabs, keys, a resolved config, or a diff"
    ),
    CommandEntry("auth", f"{_CMD}.auth_cmd", "store or check the W&B API key (never echoed)"),
    CommandEntry(
        "synth",
        f"{_CMD}.synth_cmd",
        "generate SOUL-driven SFT and preference data from an endpoint",
    ),
    CommandEntry(
        "serve", f"{_CMD}.serve_cmd", "serve a checkpoint over an OpenAI-compatible HTTP API"
    ),
    CommandEntry(
        "web", f"{_CMD}.web_cmd", "open the TUI in a browser (textual-serve on 127.0.0.1)"
    ),
    CommandEntry(
        "project",
        f"{_CMD}.project_cmd",
        "projects: SOUL versions and their diff, datasets checked by line",
    ),
    CommandEntry(
        "export",
        f"{_CMD}.export_cmd",
        "export a checkpoint for transformers, onnxruntime or nanochat",
    ),
    CommandEntry(
        "import", f"{_CMD}.export_cmd", "turn a karpathy/nanochat checkpoint into a run directory"
    ),
    CommandEntry(
        "mcp", f"{_CMD}.mcp_cmd", "MCP server on stdio so an assistant can drive runs (extra: mcp)"
    ),
    CommandEntry(
        "plugins",
        f"{_CMD}.plugins_cmd",
        "list installed plugins, what they add; enable/disable one",
    ),
    # training stages (train.stage): jax_engine.tasks.Task subclasses, one file each
    StageEntry("pretrain", f"{_TASKS}.pretrain:PretrainTask", "next-token prediction on a corpus"),
    StageEntry("sft", f"{_TASKS}.sft:SFTTask", "chat fine-tuning (see run.init_from)"),
    StageEntry("dpo", f"{_TASKS}.dpo:DPOTask", "direct preference optimization (see pref)"),
    StageEntry("orpo", f"{_TASKS}.orpo:ORPOTask", "odds-ratio preference optimization"),
    StageEntry("simpo", f"{_TASKS}.simpo:SimPOTask", "simple preference optimization"),
    # export formats (nanochat-tui export --format): write(source, out), check(source)
    ExportFormatEntry(
        "hf",
        f"{_EXPORT}.hf:export_hf",
        f"{_EXPORT}.hf:check_exportable",
        "transformers' nanochat type",
    ),
    ExportFormatEntry(
        "onnx",
        f"{_EXPORT}.onnx_graph:export_onnx",
        f"{_EXPORT}.onnx_graph:check_exportable",
        "the forward pass for onnxruntime",
    ),
    ExportFormatEntry(
        "nanochat",
        f"{_EXPORT}.nanochat_format:export_nanochat",
        f"{_EXPORT}.nanochat_format:check_exportable",
        "karpathy/nanochat's checkpoint files (needs torch)",
    ),
    # eval prompt presets: written to eval_presets.yaml the first time the Chat pane needs them
    EvalPresetEntry("capital", "The capital of France is", "complete"),
    EvalPresetEntry("python-def", "def fibonacci(n):\n    ", "complete"),
    EvalPresetEntry("stdlib-doc", "The os.path module provides", "complete"),
    EvalPresetEntry("greeting", "Hello! Who are you?", "chat"),
    EvalPresetEntry("why-sky", "Why is the sky blue?", "chat"),
)
