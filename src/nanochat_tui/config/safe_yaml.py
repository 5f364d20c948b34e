"""Reading YAML from people and files without trusting it.

A prefab or an override is read under limits so no input can hang, crash or flood the terminal:
regular files only (a FIFO never blocks: the file is stat-ed first and opened non-blocking), at
most ``MAX_BYTES``, UTF-8 only, nesting at most ``MAX_DEPTH`` (brackets on the raw text, then the
token stream, both linear, before the recursive composer runs), aliases expanding to at most
``MAX_NODES`` nodes ("billion laughs"), no recursive aliases. Scalars resolve as YAML 1.2 core
does: ``yes``/``no``/``on``/``off`` stay strings, so they never become booleans or 0/1.

A config holds what JSON holds: mappings, lists, strings, numbers, true/false and null. An explicit
tag may say which of those a scalar is (``!!str 5``, ``!!float 1``); a value its tag cannot hold
(``!!int 1.5``, ``!!bool maybe``) and every other tag (``!!binary``, ``!!set``, ``!!timestamp``,
``!!python/...``, ``!custom``) is refused.

Every refusal is a ``YamlInputError`` with one line that quotes at most ``excerpt()`` of the input.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 100_000
EXCERPT_CHARS = 60


class YamlInputError(ValueError):
    """Input refused before or while parsing; the message is one short line."""


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """``repr`` of a value cut to ``limit`` characters (error messages never quote more)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# libyaml (shipped in PyYAML's wheels) scans in C: a 1 MiB plain scalar takes milliseconds
# instead of seconds.
_BASE = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


class StrictLoader(_BASE):  # type: ignore[misc, valid-type]
    """SafeLoader with YAML 1.2 core-schema scalars (no 1.1 yes/no/on/off, sexagesimal, 0777)."""


# YAML 1.2 core schema: what each tag's plain scalar looks like.
_CORE = {
    "tag:yaml.org,2002:bool": (r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    "tag:yaml.org,2002:int": (r"^[-+]?[0-9]+$", "-+0123456789"),
    "tag:yaml.org,2002:float": (
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.?(?:inf|Inf|INF)|\.?(?:nan|NaN|NAN))$",
        "-+0123456789.iInN",
    ),
    "tag:yaml.org,2002:null": (r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    "tag:yaml.org,2002:merge": (r"^<<$", "<"),
}
_PATTERNS = {tag: re.compile(pattern) for tag, (pattern, _first) in _CORE.items()}

StrictLoader.yaml_implicit_resolvers = {}
for _tag, (_pattern, _first) in _CORE.items():
    StrictLoader.add_implicit_resolver(_tag, _PATTERNS[_tag], list(_first))


def _short_tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


def _scalar(loader: yaml.SafeLoader, node: yaml.Node, what: str) -> str:
    """The node's text when it looks like ``what`` (its tag's core-schema pattern)."""
    text = str(loader.construct_scalar(node))
    if not _PATTERNS[node.tag].match(text):
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"{_short_tag(node.tag)} needs {what} (got {excerpt(text)})",
            node.start_mark,
        )
    return text


def _construct_null(loader: yaml.SafeLoader, node: yaml.Node) -> None:
    _scalar(loader, node, "null or ~")


def _construct_bool(loader: yaml.SafeLoader, node: yaml.Node) -> bool:
    return _scalar(loader, node, "true or false").lower() == "true"


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = _scalar(loader, node, "a whole number")
    try:
        return int(text)
    except ValueError:  # past Python's 4300-digit limit on int(str)
        raise yaml.constructor.ConstructorError(
            None, None, f"a whole number of {len(text):,} digits is out of range", node.start_mark
        ) from None


def _construct_float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    text = _scalar(loader, node, "a number").lower()
    return float(text.replace(".inf", "inf").replace(".nan", "nan"))


def _refuse_tag(loader: yaml.SafeLoader, node: yaml.Node) -> None:
    raise yaml.constructor.ConstructorError(
        None,
        None,
        f"the tag {_short_tag(node.tag)} has no place in a config (it holds strings, numbers, "
        "true/false, null, lists and mappings); quote a string that starts with '!'",
        node.start_mark,
    )


_SafeConstructor = yaml.constructor.SafeConstructor
StrictLoader.yaml_constructors = {
    "tag:yaml.org,2002:null": _construct_null,
    "tag:yaml.org,2002:bool": _construct_bool,
    "tag:yaml.org,2002:int": _construct_int,
    "tag:yaml.org,2002:float": _construct_float,
    "tag:yaml.org,2002:str": _SafeConstructor.construct_yaml_str,
    "tag:yaml.org,2002:seq": _SafeConstructor.construct_yaml_seq,
    "tag:yaml.org,2002:map": _SafeConstructor.construct_yaml_map,
    "tag:yaml.org,2002:merge": _SafeConstructor.construct_yaml_str,  # ``<<`` as a value, not a key
    None: _refuse_tag,  # any other tag
}


class QuotingDumper(yaml.SafeDumper):
    """SafeDumper that quotes a string either YAML 1.1 or StrictLoader would read as something
    else ('yes', '1e5', '.inf'), so what it writes reads back the same with any loader."""


QuotingDumper.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in yaml.SafeDumper.yaml_implicit_resolvers.items()
}
for _first, _resolvers in StrictLoader.yaml_implicit_resolvers.items():
    QuotingDumper.yaml_implicit_resolvers.setdefault(_first, []).extend(_resolvers)


_OPEN = (
    yaml.BlockMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.FlowSequenceStartToken,
)
_CLOSE = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


# Brackets outside quoted strings and comments. YAML scanners look ahead over every open flow
# collection (quadratic in the nesting), so nesting is bounded on the raw text first.
_FLOW = re.compile(r"""[\[\]{}]|"(?:\\.|[^"\\])*"|'(?:''|[^'])*'|(?:^|(?<=\s))#[^\n]*""", re.M)


def _check_flow_depth(text: str) -> None:
    depth = 0
    for match in _FLOW.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                raise YamlInputError(f"nested more than {MAX_DEPTH} levels deep (line {line})")
        elif char in "]}":
            depth = max(0, depth - 1)


def _check_depth(text: str) -> None:
    _check_flow_depth(text)
    depth = 0
    for token in yaml.scan(text, Loader=StrictLoader):
        if isinstance(token, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                line = token.start_mark.line + 1
                raise YamlInputError(f"nested more than {MAX_DEPTH} levels deep (line {line})")
        elif isinstance(token, _CLOSE):
            depth -= 1


def _check_expansion(root: yaml.Node) -> None:
    """Count nodes as they would be after alias expansion; refuse cycles and blow-ups."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise YamlInputError("a YAML alias refers to itself (recursive anchor)")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        active.discard(key)
        if total > MAX_NODES:
            raise YamlInputError(
                f"YAML aliases expand to more than {MAX_NODES:,} values (an alias bomb?)"
            )
        sizes[key] = total
        return total

    size(root)


def parse(text: str) -> Any:
    """Parse one YAML document under the limits above (YAML 1.2 scalars)."""
    if len(text) > MAX_BYTES:
        raise YamlInputError(f"longer than {MAX_BYTES // 1024} KiB")
    try:
        _check_depth(text)
        node = yaml.compose(text, Loader=StrictLoader)
        if node is None:
            return None
        _check_expansion(node)
        return StrictLoader(text).construct_document(node)
    except RecursionError:
        raise YamlInputError(f"nested more than {MAX_DEPTH} levels deep") from None
    except yaml.constructor.ConstructorError as err:  # a tag, or a value its tag cannot hold
        mark = err.problem_mark
        where = f" (line {mark.line + 1})" if mark is not None and "\n" in text.strip() else ""
        raise YamlInputError(f"{err.problem}{where}") from None


def read_text(path: Path) -> str:
    """A regular file's text (UTF-8, at most MAX_BYTES). Never blocks on a FIFO or device."""
    try:
        info = os.stat(path)
    except OSError as err:
        raise YamlInputError(f"cannot read {path}: {err.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise YamlInputError(f"{path} is not a regular file ({_kind(info.st_mode)})")
    if info.st_size > MAX_BYTES:
        raise YamlInputError(f"{path} is {info.st_size:,} bytes; a prefab is at most 1 MiB")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise YamlInputError(f"cannot read {path}: {err.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # swapped after the stat
            raise YamlInputError(f"{path} is not a regular file")
        data = fh.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise YamlInputError(f"{path} is larger than 1 MiB; a prefab is at most 1 MiB")
    return decode(data, str(path))


def decode(data: bytes, source: str) -> str:
    """UTF-8 (a BOM is allowed); anything else is refused with the offset of the first bad byte."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise YamlInputError(f"{source} is UTF-16 text; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise YamlInputError(
            f"{source} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "save it as UTF-8"
        ) from None


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a plain file"
