"""Prefab loading, ``--set`` overrides, validation with readable errors, diff, and save-as."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from nanochat_tui import paths, rundir
from nanochat_tui.config import safe_yaml
from nanochat_tui.config.safe_yaml import YamlInputError, excerpt
from nanochat_tui.config.schema import PATCHABLE_FIELDS, Config

INT64_MAX = 2**63 - 1


class ConfigError(ValueError):
    """A config problem worded for a person: what is wrong and what to do about it."""


# ---------------------------------------------------------------- flattening


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}. Lists and plugin dicts stay as leaf values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and dotted not in ("plugins", "ui"):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def known_keys() -> list[str]:
    """Every dotted key a user may set (leaves of the schema)."""
    keys: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel) and name != "ui":
                walk(ann, f"{prefix}{name}.")
            else:
                keys.append(f"{prefix}{name}")

    walk(Config, "")
    return keys


def field_info(dotted: str):
    """The pydantic FieldInfo of a dotted key, or None."""
    model: type[BaseModel] = Config
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        if i == len(parts) - 1:
            return field
        ann = field.annotation
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return None


def get_value(config: Config, dotted: str) -> Any:
    """The value at a dotted key; a list of sections (``model.blocks``) comes back as plain data."""
    obj: Any = config
    for part in dotted.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    if isinstance(obj, list):
        return [
            o.model_dump(mode="json", exclude_defaults=True) if isinstance(o, BaseModel) else o
            for o in obj
        ]
    return obj


# ---------------------------------------------------------------- validation


def _format_validation_error(err: ValidationError, source: str = "") -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if p not in ("function-after",))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(loc, known_keys(), n=1)
            hint = f" — did you mean '{close[0]}'?" if close else ""
            lines.append(f"unknown key '{loc}'{hint}")
        elif loc and not isinstance(e.get("input"), dict | list):
            lines.append(f"{loc}: {msg} (got {excerpt(e.get('input'))})")
        elif loc:  # a check across fields of a section: its message names them
            lines.append(f"{loc}: {msg}")
        else:
            lines.append(msg)
    where = f" in {source}" if source else ""
    return f"invalid config{where}: " + "; ".join(lines)


def _check_int64(value: Any, where: str) -> None:
    """Refuse integers that no field can hold (pydantic would take 10**40 for an ``int``)."""
    stack = [(value, where)]
    while stack:
        item, loc = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, f"{loc}.{k}" if loc else str(k)) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{loc}[{i}]") for i, v in enumerate(item))
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > INT64_MAX:
            raise ConfigError(
                f"invalid config: {loc or 'value'}: integer out of range "
                f"(got {excerpt(item, 24)}; at most {INT64_MAX})"
            )


def validate(data: dict[str, Any], source: str = "", *, sections: bool = True) -> Config:
    """The one place a config tree becomes a Config: strict types, finite numbers, int64 ints,
    and ``plugins.<name>`` sections checked by their plugin's schema (``sections=False`` skips
    that for a live patch, which never touches them: the engine's path stays plugin-free)."""
    _check_int64(data, "")
    try:
        config = Config.model_validate(data, strict=True)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None
    if sections and config.plugins:
        from nanochat_tui.config.plugin_sections import validate_sections

        sections, errors = validate_sections(config.plugins)
        if errors:
            where = f" in {source}" if source else ""
            raise ConfigError(f"invalid config{where}: " + "; ".join(errors))
        config.plugins = sections
    return config


def field_error(config: Config, dotted: str, raw: str) -> str | None:
    """Validate one edited field as the TUI does while a user types; None when it is fine."""
    try:
        apply_overrides(config, [f"{dotted}={raw}"])
    except ConfigError as err:
        return str(err).removeprefix("invalid config: ").removeprefix("invalid override: ")
    return None


# ---------------------------------------------------------------- overrides


def parse_value(raw: str, key: str = "") -> Any:
    """'12' -> 12, '3e-4' -> 0.0003, 'true' -> True, 'null'/'' -> None, '[1, 2]' -> a list, else
    the string. YAML 1.2 scalars: 'no', 'on', '0x10' stay strings (strict validation then names
    the field). Raises ConfigError, naming ``key`` and quoting the value, for input over the size
    or nesting limits, a tag other than !!str/!!int/!!float/!!bool/!!null, or a value its tag
    cannot hold ('!!int 1.5')."""
    if raw.strip() == "":
        return None
    try:
        return safe_yaml.parse(raw)
    except YamlInputError as err:
        where = f"{key}=" if key else "value "
        raise ConfigError(f"invalid override: {where}{excerpt(raw)}: {err}") from None
    except yaml.YAMLError:
        return raw


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(
                f"invalid override: '{dotted}' goes below a value that is not a section"
            )
    node[parts[-1]] = value


def apply_overrides(
    config: Config, overrides: list[str] | dict[str, Any], *, sections: bool = True
) -> Config:
    """Return a new Config with ``key=value`` overrides applied and the whole tree re-validated."""
    items = (
        list(overrides.items())
        if isinstance(overrides, dict)
        else [_split_override(o) for o in overrides]
    )
    data = config.model_dump()
    keys = set(known_keys())
    for dotted, value in items:
        if dotted not in keys and not dotted.startswith("plugins."):
            close = difflib.get_close_matches(dotted, sorted(keys), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else "; see `nanochat-tui config keys`"
            raise ConfigError(f"invalid override: unknown key '{dotted}'{hint}")
        _set_dotted(data, dotted, parse_value(value, dotted) if isinstance(value, str) else value)
    return validate(data, "overrides", sections=sections)


def _split_override(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(f"invalid override: '{text}' is not key=value (e.g. model.depth=4)")
    key, _, value = text.partition("=")
    return key.strip(), value.strip()


def validate_patch(config: Config, changes: dict[str, Any]) -> Config:
    """A live patch: only PATCHABLE_FIELDS, and the result must still validate."""
    bad = [k for k in changes if k not in PATCHABLE_FIELDS]
    if bad:
        raise ConfigError(
            f"cannot change {', '.join(bad)} during a run; patchable: {', '.join(PATCHABLE_FIELDS)}"
        )
    return apply_overrides(config, changes, sections=False)


# ---------------------------------------------------------------- prefabs


BUNDLED_PREFIX = "bundled:"


@dataclass(frozen=True)
class PrefabEntry:
    """One prefab file as `config prefabs` and the TUI picker show it."""

    name: str  # what load_prefab takes ("bundled:tiny" for a bundled prefab a user one shadows)
    path: Path
    origin: str  # "bundled" | "user"
    hardware: str = ""
    error: str | None = None  # why it does not load (the file is listed, not used)
    shadowed: bool = False  # a bundled prefab hidden behind a user prefab of the same name


def list_prefabs() -> dict[str, Path]:
    """name -> path for bundled prefabs, then user prefabs (a user prefab shadows a bundled one)."""
    found: dict[str, Path] = {}
    for folder in (paths.bundled_prefabs_dir(), paths.user_prefabs_dir()):
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                found[path.stem] = path
    return found


def bundled_prefab_names() -> set[str]:
    folder = paths.bundled_prefabs_dir()
    return {p.stem for p in folder.glob("*.yaml")} if folder.is_dir() else set()


def scan_prefabs() -> list[PrefabEntry]:
    """Every prefab file, bundled first, each loaded to find out whether it works.

    A broken file (bad YAML, not UTF-8, invalid values, a FIFO, ...) is listed with its reason
    instead of stopping the listing. A bundled prefab shadowed by a user prefab stays reachable as
    ``bundled:NAME``.
    """
    user_names = {p.stem for p in paths.user_prefabs_dir().glob("*.yaml")}
    entries: list[PrefabEntry] = []
    for origin, folder in (
        ("bundled", paths.bundled_prefabs_dir()),
        ("user", paths.user_prefabs_dir()),
    ):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.yaml")):
            shadowed = origin == "bundled" and path.stem in user_names
            name = f"{BUNDLED_PREFIX}{path.stem}" if shadowed else path.stem
            try:
                config = _load_file(path)
            except ConfigError as err:
                entries.append(PrefabEntry(name, path, origin, error=str(err), shadowed=shadowed))
                continue
            entries.append(PrefabEntry(name, path, origin, config.hardware, shadowed=shadowed))
    return entries


def load_yaml(path: Path) -> dict[str, Any]:
    """A prefab/run config file as a dict, read under safe_yaml's limits; ConfigError otherwise."""
    try:
        data = safe_yaml.parse(safe_yaml.read_text(path)) or {}
    except YamlInputError as err:
        text = str(err)
        raise ConfigError(text if str(path) in text else f"{path}: {text}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"{path} is not valid YAML{where}: fix the file or pick another prefab"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (model:, train:, ...)")
    return data


def load_prefab(name_or_path: str) -> Config:
    """Load a prefab by name (user first, then bundled; ``bundled:NAME`` for the bundled one) or
    by path to a YAML file."""
    path = Path(name_or_path).expanduser()
    if name_or_path.startswith(BUNDLED_PREFIX):
        path = paths.bundled_prefabs_dir() / f"{name_or_path.removeprefix(BUNDLED_PREFIX)}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"no bundled prefab named '{path.stem}'; bundled: "
                + ", ".join(sorted(bundled_prefab_names()))
            )
    elif not (path.suffix in (".yaml", ".yml") and os.path.lexists(path)):
        prefabs = list_prefabs()
        if name_or_path not in prefabs:
            close = difflib.get_close_matches(name_or_path, list(prefabs), n=1, cutoff=0.5)
            hint = f" — did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"no prefab named '{name_or_path}'{hint}; available: {', '.join(prefabs) or 'none'}"
            )
        path = prefabs[name_or_path]
    return _load_file(path)


def _load_file(path: Path) -> Config:
    data = load_yaml(path)
    data.setdefault("name", path.stem)
    return validate(data, str(path))


def load_config(prefab: str, overrides: list[str] | None = None) -> Config:
    config = load_prefab(prefab)
    return apply_overrides(config, overrides) if overrides else config


def to_yaml(config: Config) -> str:
    return yaml.dump(
        config.model_dump(mode="json"),
        Dumper=safe_yaml.QuotingDumper,
        sort_keys=False,
        allow_unicode=True,
    )


def save_prefab(config: Config, name: str, *, overwrite: bool = False) -> Path:
    """Save as a user prefab. Refuses to clobber unless ``overwrite``; writes atomically."""
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ConfigError(f"prefab name '{name}' may use only letters, digits, '-', '_' and '.'")
    if name in bundled_prefab_names():
        raise ConfigError(
            f"'{name}' is a bundled prefab; save under another name (e.g. '{name}-custom')"
        )
    path = paths.user_prefabs_dir() / f"{name}.yaml"
    if path.exists() and not overwrite:
        raise FileExistsError(path)
    config = config.model_copy(update={"name": name})
    rundir.write_atomic(path, to_yaml(config))
    return path


def diff(base: Config, current: Config) -> list[tuple[str, Any, Any]]:
    """(key, base value, current value) for every leaf that differs."""
    a = flatten(base.model_dump(mode="json"))
    b = flatten(current.model_dump(mode="json"))
    return [
        (k, a.get(k), b.get(k))
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k) and k != "name"
    ]
