"""Fuzzing the config path (issue 10): generated ``--set`` values and corrupted prefab files go
through the loader (every case) and the real CLI (`config show`, every tenth case and the whole
corpus); each must end in a valid config or one short error line — never a traceback, a crash
dump, a hang or a flood of output. Seeded and bounded.

The issue's own cases live in tests/data/config_corpus/ and run first.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
from pathlib import Path

import pytest
import yaml

from nanochat_tui.cli import main
from nanochat_tui.config.loader import ConfigError, known_keys, load_config, validate

CORPUS = Path(__file__).parent / "data" / "config_corpus"
TINY = (Path(__file__).resolve().parent.parent / "prefabs" / "tiny.yaml").read_bytes()
MAX_OUTPUT = 4096
CASE_TIMEOUT_S = 5.0


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


@contextlib.contextmanager
def deadline(label: object):
    """Fail a case that runs past CASE_TIMEOUT_S (SIGALRM also interrupts a blocking open())."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT_S)
    try:
        yield
    except Hang:
        pytest.fail(f"hung for {CASE_TIMEOUT_S}s: {label!r:.200}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(*argv: str) -> tuple[int, str, str]:
    """main(argv) in-process, with the deadline."""
    out, err = io.StringIO(), io.StringIO()
    with deadline(argv), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def run_loader(prefab: str, overrides: list[str]) -> str:
    """load_config in-process: a Config, or a ConfigError of one short line; nothing else."""
    with deadline((prefab, overrides)):
        try:
            load_config(prefab, overrides)
        except ConfigError as err:
            message = str(err)
            assert "\n" not in message and len(message) <= MAX_OUTPUT, message[:500]
            return "error"
    return "ok"


def check_outcome(argv: tuple[str, ...], code: int, out: str, err: str) -> str:
    """A valid config (exit 0, YAML that validates again) or one clear error line (exit 2)."""
    label = [a[:60] for a in argv]
    assert code in (0, 2), f"exit {code} for {label}: {err[:500]}"
    assert "Traceback" not in out + err and "crash dump" not in err, label
    assert len(err) <= MAX_OUTPUT, f"{len(err)} bytes of stderr for {label}"
    if code == 2:
        lines = err.rstrip("\n").split("\n")
        assert lines[0].startswith("error: ") and len(lines) == 1, (label, err[:500])
        return "error"
    validate(yaml.load(out, Loader=yaml.CSafeLoader))
    return "ok"


# ---------------------------------------------------------------- the corpus


def corpus_overrides() -> list[str]:
    lines = (CORPUS / "overrides.txt").read_text(encoding="utf-8").splitlines()
    out = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if line.startswith("DEEP:"):
            line = "ui=" + "[" * int(line.removeprefix("DEEP:"))
        out.append(line)
    return out


@pytest.mark.parametrize("override", corpus_overrides(), ids=lambda o: o[:40])
def test_corpus_overrides_are_refused_clearly(override):
    code, out, err = run_cli("config", "show", "tiny", "--set", override)
    assert check_outcome(("--set", override), code, out, err) == "error"


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.yaml")))
def test_corpus_prefab_files_are_refused_clearly(name, tmp_path):
    path = tmp_path / name
    path.write_bytes((CORPUS / name).read_bytes())
    code, out, err = run_cli("config", "show", str(path))
    assert check_outcome((name,), code, out, err) == "error"
    if name in ("billion_laughs.yaml", "deep_flow.yaml"):
        assert len(err) < 400  # quotes at most a short excerpt


def test_non_regular_prefab_files_never_block(tmp_path):
    from nanochat_tui import paths

    user = paths.user_prefabs_dir()
    os.mkfifo(user / "fifo.yaml")  # opening a FIFO for reading blocks until a writer comes
    (user / "dir.yaml").mkdir()
    (user / "zero.yaml").symlink_to("/dev/zero")
    (user / "loop.yaml").symlink_to(user / "loop.yaml")
    for name in ("fifo", "dir", "zero", "loop"):
        code, out, err = run_cli("config", "show", name)
        assert check_outcome((name,), code, out, err) == "error"
    code, out, err = run_cli("config", "show", str(user / "fifo.yaml"))
    assert code == 2 and "FIFO" in err
    code, out, err = run_cli("config", "prefabs")  # lists them as broken, does not hang or abort
    assert code == 0 and out.count("✗ broken") == 4 and "tiny" in out


def test_oversized_prefab_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(TINY + b"#" * (2 * 1024 * 1024))
    code, out, err = run_cli("config", "show", str(path))
    assert check_outcome(("big",), code, out, err) == "error" and "1 MiB" in err


# ---------------------------------------------------------------- generated cases


def _deep(rng: random.Random) -> str:
    depth = rng.choice([30, 33, 100, 999, 3000])
    opener = rng.choice(["[", "{a: "])
    return opener * depth


def _value(rng: random.Random) -> str:
    pick = rng.randrange(14)
    if pick == 0:
        return str(rng.choice([0, 1, -1, 2**63, 2**63 - 1, -(2**64), 10**40, 7]))
    if pick == 1:
        return rng.choice(["inf", "-inf", ".inf", "nan", ".NaN", "1e400", "-1e400", "1e-400"])
    if pick == 2:
        return rng.choice(["yes", "no", "on", "off", "y", "n", "Y", "~", "null", "True", "FALSE"])
    if pick == 3:
        return rng.choice(["0x10", "0o17", "017", "1_000", "1:30", "+5", "-0", ".5", "5."])
    if pick == 4:
        return _deep(rng)
    if pick == 5:
        return "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(1, 40)))
    if pick == 6:
        return "x" * rng.choice([1000, 100_000, 2_000_000])
    if pick == 7:
        return rng.choice(["&a [*a]", "*undefined", "&a x", "[&a 1, *a, *a]", "<<: *x"])
    if pick == 8:
        return rng.choice(["{", "]", '"unterminated', "'", "[1, 2", "{a: 1, a: 2}", ":", "- -"])
    if pick == 9:
        return rng.choice(["!!python/object:os.system", "!!binary aGk=", "!custom x", "!!set {}"])
    if pick == 10:
        return rng.choice(["\t", "a\x00b", "\x1b[31mred", "line\nbreak", "\ud800"])
    if pick == 11:
        return f"{rng.uniform(-1e6, 1e6):.{rng.randrange(1, 12)}g}"
    if pick == 12:
        return rng.choice(["[1, 2, 3]", "{screens: []}", "{screens: [{name: x}]}", "[]", "{}"])
    return str(rng.randrange(-5, 5000))


def test_fuzz_set_values():
    rng = random.Random(20261129)
    keys = [*known_keys(), "plugins.p.k", "ui", "model", "model.depth.x", "nope", "a..b", ""]
    outcomes = {"ok": 0, "error": 0}
    for i in range(600):
        override = f"{rng.choice(keys)}={_value(rng)}"
        try:
            override.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate cannot reach argv from a shell
            continue
        outcome = run_loader("tiny", [override])
        if i % 10 == 0:
            code, out, err = run_cli("config", "show", "tiny", "--set", override)
            assert check_outcome(("--set", override), code, out, err) == outcome
        outcomes[outcome] += 1
    assert outcomes["ok"] > 30 and outcomes["error"] > 200, outcomes


def _corrupt(rng: random.Random) -> bytes:
    data = bytearray(TINY)
    pick = rng.randrange(10)
    if pick == 0:
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if pick == 1:
        return bytes(data[: rng.randrange(len(data))])
    if pick == 2:
        pos = rng.randrange(len(data))
        return bytes(data[:pos]) + bytes(rng.randrange(256) for _ in range(20)) + bytes(data[pos:])
    if pick == 3:
        enc = rng.choice(["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"])
        return (TINY.decode() + "description: café ünïcode\n").encode(enc, errors="replace")
    if pick == 4:
        return b"ui: " + _deep(rng).encode() + b"\n"
    if pick == 5:
        depth = rng.choice([20, 40, 200])
        return "".join(" " * i + f"k{i}:\n" for i in range(depth)).encode() + b" " * depth + b"v\n"
    if pick == 6:
        width, levels = rng.choice([(3, 5), (9, 9), (20, 6)])
        lines = ["a: &a [" + ",".join(["x"] * width) + "]"]
        names = "abcdefghijk"
        for i in range(1, levels):
            lines.append(
                f"{names[i]}: &{names[i]} [" + ",".join([f"*{names[i - 1]}"] * width) + "]"
            )
        lines.append(f"plugins: {{p: {{k: *{names[levels - 1]}}}}}")
        return "\n".join(lines).encode()
    if pick == 7:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400)))
    if pick == 8:
        return TINY + rng.choice([b"\nmodel: {softcap: .inf}\n", b"\ntrain: {seed: 1e400}\n"])
    return rng.choice(
        [b"", b"# only a comment\n", b"[]", b"42", b"~", b"---\n---\n", b"\xef\xbb\xbf"]
    )


def test_fuzz_prefab_files(tmp_path):
    rng = random.Random(1129)
    outcomes = {"ok": 0, "error": 0}
    for i in range(300):
        path = tmp_path / f"case{i}.yaml"
        path.write_bytes(_corrupt(rng))
        outcome = run_loader(str(path), [])
        if i % 10 == 0:
            code, out, err = run_cli("config", "show", str(path))
            assert check_outcome((path.name,), code, out, err) == outcome
        outcomes[outcome] += 1
    assert outcomes["error"] > 150, outcomes
