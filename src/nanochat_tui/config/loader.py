"""Prefab loading, ``--set`` overrides, validation with readable errors, diff, and save-as."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from nanochat_tui import paths
from nanochat_tui.config.schema import PATCHABLE_FIELDS, Config


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
    obj: Any = config
    for part in dotted.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
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
        elif loc:
            lines.append(f"{loc}: {msg} (got {e.get('input')!r})")
        else:
            lines.append(msg)
    where = f" in {source}" if source else ""
    return f"invalid config{where}: " + "; ".join(lines)


def validate(data: dict[str, Any], source: str = "") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def field_error(config: Config, dotted: str, raw: str) -> str | None:
    """Validate one edited field as the TUI does while a user types; None when it is fine."""
    try:
        apply_overrides(config, [f"{dotted}={raw}"])
    except ConfigError as err:
        return str(err).removeprefix("invalid config: ").removeprefix("invalid override: ")
    return None


# ---------------------------------------------------------------- overrides


def parse_value(raw: str) -> Any:
    """'12' -> 12, '3e-4' -> 0.0003, 'true' -> True, 'null'/'' -> None, else the string."""
    if raw.strip() == "":
        return None
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else value
        except ValueError:
            return value
    return value


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


def apply_overrides(config: Config, overrides: list[str] | dict[str, Any]) -> Config:
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
        _set_dotted(data, dotted, parse_value(value) if isinstance(value, str) else value)
    return validate(data, "overrides")


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
    return apply_overrides(config, changes)


# ---------------------------------------------------------------- prefabs


def list_prefabs() -> dict[str, Path]:
    """name -> path for bundled prefabs, then user prefabs (a user prefab shadows a bundled one)."""
    found: dict[str, Path] = {}
    for folder in (paths.bundled_prefabs_dir(), paths.user_prefabs_dir()):
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                found[path.stem] = path
    return found


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"{path} is not valid YAML{where}: fix the file or pick another prefab"
        ) from None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (model:, train:, ...)")
    return data


def load_prefab(name_or_path: str) -> Config:
    """Load a prefab by name (bundled or user) or by path to a YAML file."""
    path = Path(name_or_path).expanduser()
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        prefabs = list_prefabs()
        if name_or_path not in prefabs:
            close = difflib.get_close_matches(name_or_path, list(prefabs), n=1, cutoff=0.5)
            hint = f" — did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"no prefab named '{name_or_path}'{hint}; available: {', '.join(prefabs) or 'none'}"
            )
        path = prefabs[name_or_path]
    data = load_yaml(path)
    data.setdefault("name", path.stem)
    return validate(data, str(path))


def load_config(prefab: str, overrides: list[str] | None = None) -> Config:
    config = load_prefab(prefab)
    return apply_overrides(config, overrides) if overrides else config


def to_yaml(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def save_prefab(config: Config, name: str, *, overwrite: bool = False) -> Path:
    """Save as a user prefab. Refuses to clobber unless ``overwrite``; writes atomically."""
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigError(f"prefab name '{name}' may use only letters, digits, '-', '_' and '.'")
    path = paths.user_prefabs_dir() / f"{name}.yaml"
    if path.exists() and not overwrite:
        raise FileExistsError(path)
    config = config.model_copy(update={"name": name})
    write_atomic(path, to_yaml(config))
    return path


def write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Write via a temp file + rename so a crash never leaves a half-written file."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def diff(base: Config, current: Config) -> list[tuple[str, Any, Any]]:
    """(key, base value, current value) for every leaf that differs."""
    a = flatten(base.model_dump(mode="json"))
    b = flatten(current.model_dump(mode="json"))
    return [
        (k, a.get(k), b.get(k))
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k) and k != "name"
    ]
