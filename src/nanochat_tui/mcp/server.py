"""The FastMCP app: each tool's schema comes from its annotated signature, its description from
its docstring. Errors reach the client as MCP tool errors with one readable message (UserError /
ConfigError text; anything else by type and scrubbed message), never a traceback.

Python-level stdout is sent to stderr while a tool runs: on the stdio transport stdout carries the
protocol, and a stray print would corrupt it (``commands/mcp_cmd.py`` guards the file descriptor).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from nanochat_tui.errors import UserError
from nanochat_tui.mcp import chat as chat_mod
from nanochat_tui.mcp import tools

Overrides = Annotated[
    list[str],
    Field(description='KEY=VALUE overrides, e.g. ["model.depth=4", "train.num_iterations=100"]'),
]
Prefab = Annotated[str, Field(description="prefab name (see list_prefabs) or a YAML file path")]
Run = Annotated[str, Field(description="run name (see list_runs) or run directory")]

INSTRUCTIONS = (
    "Drive nanochat-tui: list prefabs, check a config with overrides (show_config, estimate), "
    "start a detached training run, watch it (run_status), list checkpoints, steer it "
    "(control_run; stop and patch need confirm=true: ask the user first) and chat with a checkpoint."
)


def _scrubbed(value: Any, secrets: list[str]) -> Any:
    """``value`` with every string scrubbed of secret values and credential shapes."""
    from nanochat_tui.crash import scrub

    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {k: _scrubbed(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, secrets) for v in value]
    return value


def _readable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` with stdout on stderr; scrub secrets from what it returns or raises; turn our
    errors into one-message ToolErrors."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from nanochat_tui.config import ConfigError
        from nanochat_tui.crash import known_secret_values

        try:
            with contextlib.redirect_stdout(sys.stderr):
                result = fn(*args, **kwargs)
        except (UserError, ConfigError) as err:
            raise ToolError(_scrubbed(str(err), known_secret_values())) from None
        except Exception as err:
            text = _scrubbed(str(err), known_secret_values())
            raise ToolError(f"{type(err).__name__}: {text}") from None
        return _scrubbed(result, known_secret_values())

    return wrapper


def build_app() -> FastMCP:
    """The nanochat-tui MCP server with every tool registered."""
    app = FastMCP("nanochat-tui", instructions=INSTRUCTIONS)
    read_only = ToolAnnotations(readOnlyHint=True, openWorldHint=False)

    def tool(fn: Callable[..., Any], annotations: ToolAnnotations = read_only) -> None:
        app.add_tool(_readable(fn), name=fn.__name__, annotations=annotations)

    def list_prefabs() -> dict[str, Any]:
        """List bundled and user prefabs (starting configs) with their origin and hardware.
        Broken prefab files are listed with broken=true and the reason."""
        return tools.list_prefabs()

    def show_config(prefab: Prefab, overrides: Overrides = []) -> dict[str, Any]:  # noqa: B006
        """Resolve and validate a prefab with KEY=VALUE overrides; returns the full config as
        YAML, or an error naming the bad key or value."""
        return tools.show_config(prefab, overrides)

    def estimate(prefab: Prefab, overrides: Overrides = []) -> dict[str, Any]:  # noqa: B006
        """Estimate a config's size and cost: parameters, FLOPs per token, iterations, tokens,
        and hours / dollars on CPU, H100 and TPU at an assumed MFU."""
        return tools.estimate(prefab, overrides)

    def start_run(
        prefab: Prefab,
        overrides: Overrides = [],  # noqa: B006
        name: Annotated[
            str | None, Field(description="run name (default: prefab name + timestamp)")
        ] = None,
    ) -> dict[str, Any]:
        """Start a training run as a detached process (it keeps running without this server).
        Returns the run's name and directory; poll run_status to watch it."""
        return tools.start_run(prefab, overrides, name)

    def list_runs() -> dict[str, Any]:
        """List runs (newest first) with status, step and mode."""
        return tools.list_runs()

    def run_status(run: Run) -> dict[str, Any]:
        """A run's status (running/finished/stopped/failed), step, latest loss, val bpb, the
        last few step metrics, any error, and its latest checkpoint."""
        return tools.run_status(run)

    def list_checkpoints(run: Run) -> dict[str, Any]:
        """A run's saved checkpoints (step, path, val bpb, pinned), oldest first."""
        return tools.list_checkpoints(run)

    def control_run(
        run: Run,
        action: Annotated[
            Literal["checkpoint", "stop", "patch"],
            Field(
                description="checkpoint: save now; stop: checkpoint and end; patch: change "
                "live settings (e.g. optim.lr_multiplier)"
            ),
        ],
        changes: Annotated[
            list[str], Field(description='patch only: KEY=VALUE, e.g. ["optim.lr_multiplier=0.5"]')
        ] = [],  # noqa: B006
        confirm: Annotated[
            bool, Field(description="must be true for stop and patch (ask the user first)")
        ] = False,
    ) -> dict[str, Any]:
        """Steer a live run. checkpoint is safe; stop and patch change the run and are refused
        unless confirm=true."""
        return tools.control_run(run, action, changes, confirm)

    def chat(
        checkpoint: Annotated[
            str, Field(description="run name or directory (its latest checkpoint), or a step dir")
        ],
        messages: Annotated[
            list[dict[str, str]] | None,
            Field(description='chat turns, e.g. [{"role": "user", "content": "hi"}]'),
        ] = None,
        prompt: Annotated[
            str | None, Field(description="raw text to continue (base models), instead of messages")
        ] = None,
        max_tokens: Annotated[int, Field(ge=1, le=4096)] = 128,
        temperature: Annotated[float, Field(ge=0.0, le=2.0, description="0 = greedy")] = 0.8,
        seed: int = 0,
    ) -> dict[str, Any]:
        """Generate a reply from a checkpoint: messages for a chat reply, or prompt to continue
        text. The first call loads the model (seconds); later calls reuse it."""
        return chat_mod.chat(checkpoint, messages, prompt, max_tokens, temperature, seed)

    for fn in (list_prefabs, show_config, estimate, list_runs, run_status, list_checkpoints):
        tool(fn)
    tool(start_run, ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=False))
    tool(
        control_run, ToolAnnotations(readOnlyHint=False, destructiveHint=True, openWorldHint=False)
    )
    tool(chat, ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    return app
