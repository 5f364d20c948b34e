"""The FastMCP app: each tool's schema comes from its annotated signature, its description from
its docstring. Errors reach the client as MCP tool errors with one readable message (UserError /
ConfigError text; anything else by type and scrubbed message), never a traceback. Arguments that do
not fit the schema (a wrong type, a missing or unknown name) come back one line per problem.

``confirm`` is a strict boolean: pydantic's lax mode would read "yes", "true" or 1 as true, and a
client that sends a string has not asked its user a yes/no question.

Python-level stdout is sent to stderr while a tool runs: on the stdio transport stdout carries the
protocol, and a stray print would corrupt it (``commands/mcp_cmd.py`` guards the file descriptor).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field, StrictBool, ValidationError

from nanochat_tui.config.schema import PATCHABLE_FIELDS
from nanochat_tui.errors import UserError
from nanochat_tui.mcp import chat as chat_mod
from nanochat_tui.mcp import tools

Overrides = Annotated[
    list[str],
    Field(description='KEY=VALUE overrides, e.g. ["model.depth=4", "train.num_iterations=100"]'),
]
Prefab = Annotated[str, Field(description="prefab name (see list_prefabs) or a YAML file path")]
Run = Annotated[str, Field(description="run name (see list_runs) or run directory")]
CHANGES_FORMAT = (
    'a list of "KEY=VALUE" strings, e.g. ["optim.lr_multiplier=0.5", "train.save_every=100"]; '
    f"patchable keys: {', '.join(PATCHABLE_FIELDS)}"
)

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


# What a list argument looks like, for the error that says it is not one.
EXAMPLES = {
    "overrides": '["model.depth=4"]',
    "changes": '["optim.lr_multiplier=0.5"]',
    "messages": '[{"role": "user", "content": "hi"}]',
}


def _argument_problem(error: Any) -> str:
    """One line for one pydantic error of a tool's arguments: where, what, and what came."""
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])[1:]
    if error["type"] == "missing":
        return f"{where}: required"
    if error["type"] == "bool_type":
        what = "should be true or false (a JSON boolean, not a string or number)"
    else:
        what = error["msg"].replace("Input should", "should", 1)
    line = f"{where}: {what}, got {json.dumps(error.get('input'), default=str)[:80]}"
    example = EXAMPLES.get(str(error["loc"][0]))
    return f"{line}; e.g. {example}" if example else line


class _App(FastMCP):
    """FastMCP whose argument errors read one line per problem (the SDK passes pydantic's
    multi-line dump with documentation URLs through) and which refuses unknown argument names."""

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        schema = next((t.inputSchema for t in await self.list_tools() if t.name == name), None)
        known = list((schema or {}).get("properties", {}))
        problems = []
        for key in arguments or {}:
            if schema is not None and key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = (
                    f"did you mean {close[0]!r}?" if close else f"{name} takes {', '.join(known)}"
                )
                problems.append(f"{key}: unknown argument; {hint}")
        if not problems:
            try:
                return await super().call_tool(name, arguments)
            except ToolError as err:
                if not isinstance(err.__cause__, ValidationError):
                    raise
                problems = [_argument_problem(e) for e in err.__cause__.errors(include_url=False)]
        from nanochat_tui.crash import known_secret_values  # an echoed value may hold one

        raise ToolError(_scrubbed("\n".join(problems), known_secret_values()))


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
    app = _App("nanochat-tui", instructions=INSTRUCTIONS)
    read_only = ToolAnnotations(readOnlyHint=True, openWorldHint=False)

    def tool(
        fn: Callable[..., Any], annotations: ToolAnnotations = read_only, description: str = ""
    ) -> None:
        app.add_tool(
            _readable(fn),
            name=fn.__name__,
            annotations=annotations,
            description=description or None,
        )

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
        changes: Annotated[list[str], Field(description=f"patch only: {CHANGES_FORMAT}")] = [],  # noqa: B006
        confirm: Annotated[
            StrictBool,
            Field(
                description='JSON true (not "true", "yes" or 1) for stop and patch, '
                "after asking the user"
            ),
        ] = False,
    ) -> dict[str, Any]:
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
        control_run,
        ToolAnnotations(readOnlyHint=False, destructiveHint=True, openWorldHint=False),
        "Steer a live run. checkpoint is safe; stop and patch change the run and are refused "
        "unless confirm is JSON true (ask the user first). patch takes changes: "
        f"{CHANGES_FORMAT}.",
    )
    tool(chat, ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    return app
