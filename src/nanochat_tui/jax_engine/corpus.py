"""Where training text comes from: the embedded stdlib corpus, parquet shards, text folders, JSONL.

Every reader yields documents (strings) in a deterministic order, so the same config always sees
the same text, and ``corpus_fingerprint`` names that text cheaply (file names, sizes, mtimes) for
the tokenizer and token caches. No JAX here.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

from nanochat_tui.config.schema import DataConfig
from nanochat_tui.errors import UserError

SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
TEXT_SUFFIXES = (".txt", ".md")


# ---------------------------------------------------------------- embedded corpus


def stdlib_files() -> list[Path]:
    """The stdlib's .py files, sorted by relative path (tests and site-packages skipped)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        found += [Path(dirpath) / f for f in filenames if f.endswith(".py")]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def embedded_documents() -> Iterator[str]:
    """Python's own docs (``pydoc_data.topics``) then its stdlib source, one document per topic/file."""
    from pydoc_data import topics

    for key in sorted(topics.topics):
        yield topics.topics[key]
    for path in stdlib_files():
        try:
            yield path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue


# ---------------------------------------------------------------- readers for local data


def _resolve_format(source: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if source.is_file():
        if source.suffix == ".parquet":
            return "parquet"
        if source.suffix in (".jsonl", ".json"):
            return "jsonl"
        return "text"
    names = {p.suffix for p in source.rglob("*") if p.is_file()}
    if ".parquet" in names:
        return "parquet"
    if ".jsonl" in names:
        return "jsonl"
    return "text"


def _files(source: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if source.is_file():
        return [source]
    return sorted(p for p in source.rglob("*") if p.is_file() and p.suffix in suffixes)


def source_files(data: DataConfig) -> tuple[str, list[Path]]:
    """(format, files) for a local source; raises UserError if there is nothing to read."""
    source = Path(data.source).expanduser()
    if not source.exists():
        raise UserError(
            f"data.source {data.source!r} does not exist",
            "point data.source at a folder of parquet shards / .txt / .md / .jsonl files, "
            "or use data.source=embedded (no download needed)",
        )
    fmt = _resolve_format(source, data.format)
    suffixes = {"parquet": (".parquet",), "jsonl": (".jsonl", ".json"), "text": TEXT_SUFFIXES}[fmt]
    files = _files(source, suffixes)
    if not files:
        raise UserError(
            f"no {'/'.join(suffixes)} files under {source}",
            "check data.source and data.format (auto, parquet, text, jsonl)",
        )
    return fmt, files


def parquet_documents(files: Iterable[Path], text_field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    for path in files:
        pf = pq.ParquetFile(path)
        if text_field not in pf.schema_arrow.names:
            raise UserError(
                f"{path} has no column {text_field!r} (columns: {', '.join(pf.schema_arrow.names)})",
                "set data.text_field to the column holding the text",
            )
        for i in range(pf.num_row_groups):
            for text in pf.read_row_group(i, columns=[text_field]).column(0).to_pylist():
                if text:
                    yield text


def jsonl_documents(files: Iterable[Path], text_field: str) -> Iterator[str]:
    for path in files:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    raise UserError(
                        f"{path}:{lineno} is not valid JSON", "fix or remove that line"
                    ) from None
                text = record.get(text_field) if isinstance(record, dict) else None
                if isinstance(text, str) and text:
                    yield text


def text_documents(files: Iterable[Path]) -> Iterator[str]:
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        if text:
            yield text


# ---------------------------------------------------------------- public API


def iter_documents(data: DataConfig, max_chars: int | None = None) -> Iterator[str]:
    """Documents of ``data.source`` in a fixed order, capped at ``max_chars`` (default data.max_chars)."""
    cap = data.max_chars if max_chars is None else max_chars
    if data.source == "embedded":
        docs: Iterable[str] = embedded_documents()
    else:
        fmt, files = source_files(data)
        if fmt == "parquet":
            docs = parquet_documents(files, data.text_field)
        elif fmt == "jsonl":
            docs = jsonl_documents(files, data.text_field)
        else:
            docs = text_documents(files)
    used = 0
    for doc in docs:
        if cap and used + len(doc) > cap:
            rest = cap - used
            if rest > 0:
                yield doc[:rest]
            return
        used += len(doc)
        yield doc


def corpus_fingerprint(data: DataConfig) -> str:
    """A short hash naming the text a config reads (source identity + format + field + cap)."""
    h = hashlib.sha256()
    if data.source == "embedded":
        from pydoc_data import topics

        h.update(f"embedded:{sys.version_info[:3]}:{len(topics.topics)}".encode())
        root = Path(sysconfig.get_paths()["stdlib"])
        for path in stdlib_files():
            h.update(f"{path.relative_to(root).as_posix()}:{path.stat().st_size}\n".encode())
    else:
        fmt, files = source_files(data)
        h.update(f"{fmt}:{data.text_field}".encode())
        for path in files:
            st = path.stat()
            h.update(f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}\n".encode())
    h.update(f"max_chars={data.max_chars}".encode())
    return h.hexdigest()[:16]
