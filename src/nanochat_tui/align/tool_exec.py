"""Run the tool calls a model makes while chatting (pure Python; the sampler calls ``ToolRunner``).

A call is the text between ``<|python_start|>`` and ``<|python_end|>``. Two kinds:

- ``NAME {"arg": ...}`` where NAME is a user tool of the project's ``interface.json`` (a tool with a
  ``command``): the command runs without a shell, the arguments arrive as JSON on its stdin, and its
  stdout (bounded in time and size) is the output. It runs only when ``confirm(call)`` says yes:
  the TUI shows a dialog with the command and arguments; the CLI needs ``--allow-tools`` or asks.
- anything else is an expression for the built-in ``python`` calculator (align/calculator.py),
  which runs without asking: it only does arithmetic.

The output (or an ``error: ...`` line the model can read) goes back into the context as
``<|output_start|>…<|output_end|>``, as nanochat's engine does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanochat_tui.align.calculator import run_tool as run_calculator
from nanochat_tui.errors import UserError

TIMEOUT_S = 10.0  # a user tool's wall-clock limit
MAX_OUTPUT_CHARS = 2000  # output fed back to the model (the context is small)
CALL_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(\{.*\})\s*$", re.DOTALL)


@dataclass(frozen=True)
class UserTool:
    """A tool declared in interface.json with a ``command`` (argv, no shell)."""

    name: str
    command: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class ToolCall:
    """One parsed call: ``tool`` is "python" (the calculator) or a user tool's name."""

    tool: str
    text: str  # what the model wrote between the python delimiters
    args: dict[str, Any] = field(default_factory=dict)
    command: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for a confirm dialog or prompt: the argv and the JSON stdin."""
        argv = " ".join(self.command)
        return f"{self.tool}: run `{argv}` with stdin {json.dumps(self.args, ensure_ascii=False)}"


@dataclass(frozen=True)
class ToolOutcome:
    call: ToolCall
    ok: bool
    output: str  # the text that goes between <|output_start|> and <|output_end|>


def load_interface(path: Path | str) -> dict[str, UserTool]:
    """The user tools (those with a ``command``) of an ``interface.json``; one UserError naming
    the file and the field for anything this runner cannot use."""
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}", "check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(
            f"{path} is not valid JSON ({err})", 'fix it: {"tools": [{"name": ..., ...}]}'
        ) from None
    tools = data.get("tools") if isinstance(data, dict) else None
    if not isinstance(tools, list):
        raise UserError(f'{path}: no "tools" list', 'write {"tools": [...]} (docs/alignment.md)')
    out: dict[str, UserTool] = {}
    for i, tool in enumerate(tools):
        where = f"{path}, tools[{i}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise UserError(f'{where}: a tool needs a "name"', "give every tool a name")
        command = tool.get("command")
        if command is None:
            continue  # described to the model but not runnable here
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(a, str) and a for a in command)
        ):
            raise UserError(
                f"{where}.command: must be a non-empty list of strings (argv, no shell)",
                'e.g. "command": ["python3", "tools/weather.py"]',
            )
        name = tool["name"]
        if name == "python" or not CALL_RE.match(f"{name} {{}}"):
            raise UserError(
                f"{where}.name: {name!r} cannot name a user tool",
                "use letters, digits, '_', '.' or '-' (and not 'python', the calculator)",
            )
        out[name] = UserTool(name, tuple(command), str(tool.get("description", "")))
    return out


def parse_call(text: str, tools: dict[str, UserTool]) -> ToolCall:
    """``NAME {json}`` for a declared user tool, else a calculator expression."""
    match = CALL_RE.match(text)
    if match and match.group(1) in tools:
        tool = tools[match.group(1)]
        try:
            args = json.loads(match.group(2))
        except json.JSONDecodeError:
            args = None
        if isinstance(args, dict):
            return ToolCall(tool.name, text, args, tool.command)
        return ToolCall(tool.name, text, {}, ())  # malformed arguments: refused in ``run``
    return ToolCall("python", text)


def run_command(
    command: tuple[str, ...],
    args: dict[str, Any],
    *,
    timeout: float = TIMEOUT_S,
    max_chars: int = MAX_OUTPUT_CHARS,
    cwd: Path | None = None,
) -> tuple[bool, str]:
    """Run ``command`` (argv, never a shell) with ``args`` as JSON on stdin. Returns ``(ok,
    text)``: its stdout cut to ``max_chars``, or an ``error: ...`` line (exit status, timeout,
    missing program). Output goes to a temporary file, so a chatty tool cannot fill memory."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                list(command),
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                cwd=cwd,
                start_new_session=True,  # its own process group: a timeout kills its children too
            )
        except OSError as exc:
            return False, f"error: cannot start {command[0]}: {exc.strerror or exc}"
        try:
            proc.communicate(json.dumps(args).encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return False, f"error: {command[0]} took longer than {timeout:g}s and was stopped"
        out.seek(0)
        text = out.read(max_chars * 4).decode("utf-8", errors="replace")
        if proc.returncode != 0:
            err.seek(0)
            detail = err.read(300).decode("utf-8", errors="replace").strip()
            return False, f"error: exit status {proc.returncode}" + (
                f": {detail}" if detail else ""
            )
    text = text.strip()
    if len(text) > max_chars:
        text = text[:max_chars] + " …(cut)"
    return True, text


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 9)
    except OSError:
        proc.kill()
    proc.wait()


class ToolRunner:
    """Executes calls for the sampler: ``runner(text) -> ToolOutcome``.

    ``confirm(call) -> bool`` is asked before each user tool (None: user tools are refused).
    ``log`` collects every outcome, in order, for the caller to show."""

    def __init__(
        self,
        tools: dict[str, UserTool] | None = None,
        confirm: Callable[[ToolCall], bool] | None = None,
        *,
        timeout: float = TIMEOUT_S,
        max_chars: int = MAX_OUTPUT_CHARS,
    ) -> None:
        self.tools = dict(tools or {})
        self.confirm = confirm
        self.timeout = timeout
        self.max_chars = max_chars
        self.log: list[ToolOutcome] = []

    def __call__(self, text: str) -> ToolOutcome:
        call = parse_call(text, self.tools)
        outcome = self._run(call)
        self.log.append(outcome)
        return outcome

    def _run(self, call: ToolCall) -> ToolOutcome:
        if call.tool == "python":
            start = time.monotonic()
            result = run_calculator(call.text)
            if time.monotonic() - start > self.timeout:
                return ToolOutcome(call, False, "error: the calculator took too long")
            return ToolOutcome(call, result.ok, result.output)
        if not call.command:
            return ToolOutcome(
                call, False, f'error: {call.tool} takes a JSON object: {call.tool} {{"key": ...}}'
            )
        if self.confirm is None or not self.confirm(call):
            return ToolOutcome(call, False, f"error: the user declined to run {call.tool}")
        ok, output = run_command(
            call.command, call.args, timeout=self.timeout, max_chars=self.max_chars
        )
        return ToolOutcome(call, ok, output)


def interface_for_run(config: dict[str, Any], run_dir: Path | None = None) -> Path | None:
    """The interface.json a run's chats use: ``RUN_DIR/interface.json`` when there is one, else
    that of the project and SOUL version the run recorded (``align.project``,
    ``align.soul_version`` in its resolved config). None when neither exists."""
    from nanochat_tui import paths

    if run_dir is not None and (Path(run_dir) / "interface.json").is_file():
        return Path(run_dir) / "interface.json"
    align = config.get("align") if isinstance(config, dict) else None
    if not isinstance(align, dict):
        return None
    project, version = align.get("project"), align.get("soul_version")
    if not project or version is None:
        return None
    path = paths.data_dir() / "projects" / str(project) / "soul" / f"v{int(version):04d}"
    path = path / "interface.json"
    return path if path.is_file() else None
