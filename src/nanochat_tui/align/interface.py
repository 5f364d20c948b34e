"""The agent interface: the tools a model may call (``interface.json`` of a SOUL version).

Format (docs/alignment.md)::

    {"tools": [{"name": "weather",
                "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]},
                "returns": {"type": "string"},
                "command": ["python3", "weather.py"]}]}

``parameters`` is a JSON Schema object schema and ``returns`` any JSON Schema (default a string),
both checked against their metaschema (the ``$schema`` they name, else Draft 2020-12) with the
``jsonschema`` package. ``command`` is optional: the argv a chat runs with the arguments as JSON on
stdin. The built-in ``python`` calculator (align/calculator.py) is always available and never
listed; its name is reserved.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators

from nanochat_tui.errors import UserError

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
KEYS = ("name", "description", "parameters", "returns", "command")
DEFAULT_RETURNS: dict[str, Any] = {"type": "string"}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    returns: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_RETURNS))
    command: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "returns": self.returns,
        }
        if self.command:
            out["command"] = list(self.command)
        return out


PYTHON = Tool(
    name="python",
    description="Calculator: evaluates an arithmetic expression (numbers, + - * / // % **, "
    '"text".count("x")) and returns the value.',
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    },
    returns={"type": "string"},
)


@dataclass(frozen=True)
class Interface:
    """The user's tools (the built-in ``python`` calculator is implicit: see ``all_tools``)."""

    tools: tuple[Tool, ...] = ()

    def all_tools(self) -> tuple[Tool, ...]:
        """The built-in calculator, then the user's tools."""
        return (PYTHON, *self.tools)

    def get(self, name: str) -> Tool | None:
        return next((t for t in self.all_tools() if t.name == name), None)


def check_schema(schema: Any, where: str) -> None:
    """Raise a ``UserError`` unless ``schema`` is a valid JSON Schema; ``where`` names the tool
    and field (``tool 'weather', parameters``) and the message says the reason."""
    if not isinstance(schema, dict):
        raise UserError(
            f"{where}: a JSON Schema must be an object, not {type(schema).__name__}",
            'write an object such as {"type": "string"}',
        )
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as err:
        at = "/".join(str(p) for p in err.absolute_path)
        inside = f" at {at!r}" if at else ""
        raise UserError(
            f"{where}: not a valid JSON Schema{inside}: {err.message}",
            "fix the schema (https://json-schema.org/understanding-json-schema/)",
        ) from None


def parse_tool(obj: Any, where: str) -> Tool:
    """Validate one tool object; ``where`` locates it in messages (``interface.json, tool 2``)."""
    if not isinstance(obj, dict):
        raise UserError(f"{where}: a tool must be an object", f"use the keys {', '.join(KEYS)}")
    unknown = sorted(set(obj) - set(KEYS))
    if unknown:
        raise UserError(
            f"{where}: unknown field {unknown[0]!r}", f"a tool has the fields {', '.join(KEYS)}"
        )
    name = obj.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise UserError(
            f"{where}, name: {name!r} is not a tool name",
            "use letters, digits and _ (not starting with a digit), e.g. get_weather",
        )
    where = f"{where} ({name!r})"
    if name == PYTHON.name:
        raise UserError(
            f"{where}, name: 'python' is the built-in calculator", "give your tool another name"
        )
    description = obj.get("description")
    if not isinstance(description, str) or not description.strip():
        raise UserError(
            f"{where}, description: missing",
            "say in a sentence what the tool does (the model reads it)",
        )
    parameters = obj.get("parameters", {"type": "object", "properties": {}})
    check_schema(parameters, f"{where}, parameters")
    if parameters.get("type") != "object":
        raise UserError(
            f'{where}, parameters: the schema must have "type": "object"',
            'describe the arguments as {"type": "object", "properties": {...}}',
        )
    returns = obj.get("returns", DEFAULT_RETURNS)
    check_schema(returns, f"{where}, returns")
    command = obj.get("command", [])
    if not isinstance(command, list) or not all(isinstance(a, str) and a for a in command):
        raise UserError(
            f"{where}, command: must be a list of non-empty strings (an argv)",
            'e.g. ["python3", "tools/weather.py"]; the arguments arrive as JSON on stdin',
        )
    return Tool(name, description.strip(), parameters, returns, tuple(command))


def parse_interface(text: str, source: str = "interface.json") -> Interface:
    """Parse and validate ``interface.json`` text (empty text means no user tools)."""
    if not text.strip():
        return Interface()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(
            f"{source}, line {err.lineno}: malformed JSON ({err.msg})", "fix the JSON syntax"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("tools", []), list):
        raise UserError(f'{source}: expected {{"tools": [...]}}', "put the tools in a list")
    extra = sorted(set(data) - {"tools"})
    if extra:
        raise UserError(f"{source}: unknown field {extra[0]!r}", 'only "tools" is allowed')
    tools = []
    for i, obj in enumerate(data.get("tools", []), start=1):
        tool = parse_tool(obj, f"{source}, tool {i}")
        if any(t.name == tool.name for t in tools):
            raise UserError(
                f"{source}, tool {i}: a second tool named {tool.name!r}", "give it another name"
            )
        tools.append(tool)
    return Interface(tuple(tools))


def render_interface(interface: Interface) -> str:
    """``interface.json`` text (stable: indent 2, keys in the documented order)."""
    return json.dumps({"tools": [t.to_json() for t in interface.tools]}, indent=2) + "\n"


def check_arguments(tool: Tool, arguments: Any) -> str | None:
    """Why ``arguments`` do not fit ``tool``'s parameters, or None when they do."""
    validator = jsonschema.validators.validator_for(tool.parameters)(tool.parameters)
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is None:
        return None
    at = "/".join(str(p) for p in error.absolute_path)
    return f"{tool.name}: {error.message}" + (f" (at {at})" if at else "")
