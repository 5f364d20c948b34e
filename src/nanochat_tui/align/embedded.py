"""The embedded default chat set: offline, deterministic conversations for SFT.

- stdlib questions: for public functions and classes of a fixed list of standard-library modules,
  "What does `json.dumps` do?" → the first sentence of its docstring (as this Python has it);
- identity conversations: who the assistant is and what it can and cannot do;
- calculator conversations: arithmetic answered with a ``python`` tool call, its output (from
  align/calculator.py) and the answer, in nanochat's tool format.

The same Python gives the same set, in the same order. ``held_out`` splits it by a hash of each
question, so the validation conversations stay held out whatever else changes.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import random
import re
from typing import Any

from nanochat_tui.align.calculator import run_tool

MODULES = (
    "abc", "argparse", "base64", "bisect", "calendar", "collections", "colorsys", "copy", "csv",
    "datetime", "difflib", "fnmatch", "fractions", "functools", "glob", "gzip", "hashlib", "heapq",
    "html", "inspect", "io", "itertools", "json", "logging", "math", "operator", "os", "os.path",
    "pathlib", "pickle", "pprint", "random", "re", "secrets", "shlex", "shutil", "statistics",
    "string", "struct", "subprocess", "sys", "tempfile", "textwrap", "threading", "time",
    "unicodedata", "urllib.parse", "uuid", "zlib",
)  # fmt: skip

# Where os and os.path functions really live.
OS_HOMES = ("posix", "nt", "posixpath", "ntpath", "genericpath")

QUESTIONS = (
    "What does `{name}` do?",
    "What is `{name}` for?",
    "Explain `{name}` in one sentence.",
    "In Python, what does `{name}` do?",
)

NAME = "nanochat"
IDENTITY = (
    ("Who are you?", f"I am {NAME}, a small language model trained with nanochat-tui."),
    ("What is your name?", f"My name is {NAME}."),
    (
        "What can you do?",
        "I can answer short questions about the Python standard library and do arithmetic "
        "with my calculator tool.",
    ),
    (
        "What can't you do?",
        "I am a very small model: I cannot browse the web, I know little beyond Python's "
        "standard library, and I often make mistakes.",
    ),
    ("Who made you?", "I was trained on this computer with nanochat-tui, from its own data."),
    ("Hello!", f"Hello! I am {NAME}. Ask me about the Python standard library."),
    ("Are you a human?", f"No, I am {NAME}, a language model."),
    ("Can you use tools?", "Yes: a python calculator for arithmetic."),
)


def summary(obj: Any) -> str | None:
    """The first sentence of ``obj``'s own docstring (not inherited), or None without a usable one."""
    doc = obj.__doc__ if isinstance(getattr(obj, "__doc__", None), str) else None
    if not doc:
        return None
    doc = inspect.cleandoc(doc)
    paragraph = doc.strip().split("\n\n")[0]
    text = " ".join(line.strip() for line in paragraph.splitlines())
    match = re.match(r"(.+?\.)(\s|$)", text)
    sentence = match.group(1) if match else text
    if not 12 <= len(sentence) <= 200 or "(" in sentence.split(" ")[0]:
        return None  # empty, too long, or a call signature rather than a description
    return sentence


def _members(module_name: str) -> list[tuple[str, str]]:
    module = importlib.import_module(module_name)
    out, seen = [], set()
    for attr in sorted(vars(module)):
        obj = vars(module)[attr]
        if attr.startswith("_") or id(obj) in seen:
            continue  # private, or an alias of a member already asked about
        if not (inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.isclass(obj)):
            continue
        seen.add(id(obj))
        home = (getattr(obj, "__module__", None) or "").split(".")[0].lstrip("_")
        if home not in (module_name.split(".")[0], *OS_HOMES):
            continue  # imported from elsewhere (``inspect.OrderedDict``): ask its own module
        text = summary(obj)
        if text:
            out.append((f"{module_name}.{attr}", text))
    return out


def _variant(key: str, n: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "little") % n


def held_out(key: str, fraction: float) -> bool:
    """Deterministic membership of the held-out (validation) split, by a hash of ``key``."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"sft-val").digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


def stdlib_conversations() -> list[dict]:
    """One question per documented public function or class of ``MODULES``."""
    convs = []
    for module_name in MODULES:
        for name, text in _members(module_name):
            question = QUESTIONS[_variant(name, len(QUESTIONS))].format(name=name)
            answer = f"`{name}`: {text}"
            convs.append(
                {
                    "messages": [
                        {"role": "user", "content": question},
                        {"role": "assistant", "content": answer},
                    ]
                }
            )
    return convs


def identity_conversations() -> list[dict]:
    """The assistant's identity, as single-turn conversations."""
    return [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in IDENTITY
    ]


def calculator_conversations(count: int = 120) -> list[dict]:
    """Arithmetic questions answered through the calculator tool (a seeded, fixed set)."""
    rng = random.Random(0)
    convs = []
    for _ in range(count):
        a, b = rng.randint(2, 999), rng.randint(2, 99)
        op = rng.choice(("+", "-", "*", "//", "%"))
        expression = f"{a} {op} {b}"
        output = run_tool(expression).output
        convs.append(
            {
                "messages": [
                    {"role": "user", "content": f"What is {expression}?"},
                    {"role": "assistant", "content": [{"type": "python", "text": expression}]},
                    {"role": "tool", "content": output},
                    {"role": "assistant", "content": f"{expression} = {output}."},
                ]
            }
        )
    return convs


def embedded_conversations() -> list[dict]:
    """The whole embedded chat set (stdlib questions, identity, calculator use)."""
    return stdlib_conversations() + identity_conversations() + calculator_conversations()
