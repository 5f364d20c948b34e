"""Projects: SOUL versions, datasets and prefabs grouped under the user data dir.

Layout (docs/alignment.md)::

    <data_dir>/projects/<name>/
        project.json            {"name": ..., "created": ISO-8601 UTC}
        soul/v0001/SOUL.md      a SOUL version: immutable once written
        soul/v0001/interface.json
        datasets/<name>.jsonl   chat or preference rows
        prefabs/<name>.yaml     the project's own prefabs

Saving a SOUL writes a new version only when its text or interface changed; a version is written
into a hidden temporary folder and renamed into place, so a crash never leaves half a version.
The ``default`` project is created on first use with a starter SOUL, so everything works offline.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from nanochat_tui import paths
from nanochat_tui.align.interface import Interface, parse_interface, render_interface
from nanochat_tui.align.soul import STARTER_SOUL, Soul, parse_soul
from nanochat_tui.errors import UserError
from nanochat_tui.rundir import write_atomic

if TYPE_CHECKING:
    from nanochat_tui.config.schema import Config

DEFAULT = "default"
SOUL_FILE = "SOUL.md"
INTERFACE_FILE = "interface.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VERSION = re.compile(r"^v(\d{4,})$")


def projects_dir() -> Path:
    """The parent folder of every project (created on demand)."""
    path = paths.data_dir() / "projects"
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_name(name: str, what: str = "project") -> str:
    """``name`` if it is a usable file name for a project/dataset/prefab, else a UserError."""
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith("."):
        raise UserError(
            f"{name!r} is not a valid {what} name",
            "use letters, digits, '.', '_' and '-' (up to 64, starting with a letter or digit)",
        )
    return name


def version_label(version: int) -> str:
    return f"v{version:04d}"


def parse_version(text: str | int) -> int:
    """``3``, ``"3"``, ``"v3"`` or ``"v0003"`` → 3; anything else is a UserError."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"v?(\d+)", str(text).strip())
    if not match or int(match.group(1)) < 1:
        raise UserError(f"{text!r} is not a SOUL version", "write it as v0003 (or 3)")
    return int(match.group(1))


@dataclass(frozen=True)
class SoulVersion:
    """One saved SOUL version: its number, SOUL.md text and interface.json text."""

    version: int
    soul_text: str
    interface_text: str

    @property
    def label(self) -> str:
        return version_label(self.version)

    def soul(self) -> Soul:
        return parse_soul(self.soul_text, f"{self.label}/{SOUL_FILE}")

    def interface(self) -> Interface:
        return parse_interface(self.interface_text, f"{self.label}/{INTERFACE_FILE}")


@dataclass(frozen=True)
class Project:
    """A project folder; methods read and write its SOUL versions, datasets and prefabs."""

    name: str
    path: Path

    @property
    def soul_dir(self) -> Path:
        return self.path / "soul"

    @property
    def datasets_dir(self) -> Path:
        return self.path / "datasets"

    @property
    def prefabs_dir(self) -> Path:
        return self.path / "prefabs"

    def created(self) -> str:
        try:
            return str(json.loads((self.path / "project.json").read_text("utf-8"))["created"])
        except (OSError, ValueError, KeyError, TypeError):
            return ""

    # SOUL versions -------------------------------------------------------------------------

    def versions(self) -> list[int]:
        """Saved SOUL version numbers, oldest first."""
        if not self.soul_dir.is_dir():
            return []
        found = []
        for entry in self.soul_dir.iterdir():
            match = _VERSION.match(entry.name)
            if match and (entry / SOUL_FILE).is_file():
                found.append(int(match.group(1)))
        return sorted(found)

    def latest(self) -> int | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def read(self, version: int | str | None = None) -> SoulVersion:
        """A saved version (the latest when ``version`` is None)."""
        number = self.latest() if version is None else parse_version(version)
        if number is None:
            raise UserError(
                f"project {self.name!r} has no SOUL yet", "save one from the SOUL pane (key 7)"
            )
        folder = self.soul_dir / version_label(number)
        try:
            soul_text = (folder / SOUL_FILE).read_text("utf-8")
        except OSError:
            have = ", ".join(version_label(v) for v in self.versions()) or "none"
            raise UserError(
                f"project {self.name!r} has no SOUL version {version_label(number)}",
                f"pick one of: {have}",
            ) from None
        interface_path = folder / INTERFACE_FILE
        interface_text = interface_path.read_text("utf-8") if interface_path.is_file() else ""
        return SoulVersion(number, soul_text, interface_text)

    def save_soul(self, soul_text: str, interface_text: str) -> tuple[int, bool]:
        """Validate and save; returns ``(version, created)``. Nothing changed since the latest
        version → that version and False. Invalid text is a UserError and writes nothing."""
        parse_soul(soul_text, SOUL_FILE)
        interface_text = render_interface(parse_interface(interface_text, INTERFACE_FILE))
        latest = self.latest()
        if latest is not None:
            current = self.read(latest)
            same_interface = render_interface(current.interface()) == interface_text
            if current.soul_text == soul_text and same_interface:
                return latest, False
        self.soul_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.soul_dir, prefix=".new-"))
        try:
            for name, text in ((SOUL_FILE, soul_text), (INTERFACE_FILE, interface_text)):
                write_atomic(tmp / name, text)
                os.chmod(tmp / name, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            number = (latest or 0) + 1
            while True:
                try:
                    os.rename(tmp, self.soul_dir / version_label(number))
                    break
                except OSError:
                    if not (self.soul_dir / version_label(number)).exists():
                        raise
                    number += 1  # another writer took this number: take the next
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return number, True

    def diff(self, a: int | str, b: int | str) -> str:
        """A unified diff of SOUL.md and interface.json from version ``a`` to version ``b``
        (empty when they are the same)."""
        old, new = self.read(a), self.read(b)
        out: list[str] = []
        for name, x, y in (
            (SOUL_FILE, old.soul_text, new.soul_text),
            (INTERFACE_FILE, old.interface_text, new.interface_text),
        ):
            out += difflib.unified_diff(
                x.splitlines(keepends=True),
                y.splitlines(keepends=True),
                fromfile=f"{old.label}/{name}",
                tofile=f"{new.label}/{name}",
            )
        return "".join(line if line.endswith("\n") else line + "\n" for line in out)

    # datasets and prefabs ------------------------------------------------------------------

    def datasets(self) -> list[Path]:
        """``datasets/*.jsonl``, sorted by name."""
        if not self.datasets_dir.is_dir():
            return []
        return sorted(p for p in self.datasets_dir.glob("*.jsonl") if p.is_file())

    def dataset(self, name: str) -> Path:
        """The path of dataset ``name`` (with or without ``.jsonl``); a UserError if missing."""
        stem = name[: -len(".jsonl")] if name.endswith(".jsonl") else name
        path = self.datasets_dir / f"{check_name(stem, 'dataset')}.jsonl"
        if not path.is_file():
            have = ", ".join(p.stem for p in self.datasets()) or "none"
            raise UserError(
                f"project {self.name!r} has no dataset {stem!r}",
                f"pick one of: {have} (files in {self.datasets_dir})",
            )
        return path

    def prefabs(self) -> list[Path]:
        """The project's own prefabs, ``prefabs/*.yaml``, sorted by name."""
        if not self.prefabs_dir.is_dir():
            return []
        return sorted(p for p in self.prefabs_dir.glob("*.yaml") if p.is_file())

    def save_prefab(self, name: str, text: str) -> Path:
        """Write ``prefabs/<name>.yaml`` atomically (overwrites a prefab of that name)."""
        path = self.prefabs_dir / f"{check_name(name, 'prefab')}.yaml"
        write_atomic(path, text)
        return path


def list_projects() -> list[str]:
    """Project names, sorted (folders with a ``project.json``)."""
    return sorted(
        p.name for p in projects_dir().iterdir() if p.is_dir() and (p / "project.json").is_file()
    )


def create_project(name: str, soul_text: str = STARTER_SOUL) -> Project:
    """Create a project with a first SOUL version; a UserError if it exists or the name is bad."""
    check_name(name)
    path = projects_dir() / name
    if (path / "project.json").exists():
        raise UserError(f"project {name!r} already exists", "open it, or pick another name")
    project = Project(name, path)
    for folder in (project.soul_dir, project.datasets_dir, project.prefabs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    project.save_soul(soul_text, "")
    created = datetime.now(UTC).isoformat(timespec="seconds")
    write_atomic(path / "project.json", json.dumps({"name": name, "created": created}) + "\n")
    return project


def open_project(name: str | None = None) -> Project:
    """An existing project (``default`` when ``name`` is None, created on first use)."""
    name = name or DEFAULT
    check_name(name)
    path = projects_dir() / name
    if not (path / "project.json").is_file():
        if name == DEFAULT:
            return create_project(DEFAULT)
        have = ", ".join(list_projects()) or "none"
        raise UserError(
            f"no project named {name!r}",
            f"create it (nanochat-tui project create {name}) or pick one of: {have}",
        )
    return Project(name, path)


def uses_soul(config: Config) -> bool:
    """Whether a run's stage reads the SOUL (every stage after pretraining)."""
    return config.train.stage != "pretrain"


def pin_soul(config: Config) -> Config:
    """``config`` with ``align.soul_version`` set to the version the run will use (the project's
    latest when empty), so config.yaml, run.json, events and checkpoints all record it; a config
    whose stage does not use the SOUL comes back unchanged. A missing project or version is a
    UserError before the run starts."""
    if not uses_soul(config):
        return config
    project = open_project(config.align.project)
    saved = project.read(config.align.soul_version)
    saved.soul()  # a SOUL version is validated when saved; this names a hand-edited one
    saved.interface()
    pinned = config.model_copy(deep=True)
    pinned.align.soul_version = saved.version
    return pinned


def soul_for(config: Config) -> tuple[Soul, Interface]:
    """The SOUL and agent interface a run's config names (latest version when not pinned)."""
    saved = open_project(config.align.project).read(config.align.soul_version)
    return saved.soul(), saved.interface()
