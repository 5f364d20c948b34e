"""GPT-4-style byte-level BPE (HF ``tokenizers``) with nanochat's special tokens and chat format.

Also: the per-token byte counts that bits-per-byte needs, a content hash for compatibility checks,
and a cache so a second run on the same corpus skips tokenizer training. No JAX here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

import numpy as np

from nanochat_tui.errors import IncompatibleCheckpoint, UserError

SPECIAL_TOKENS = (
    "<|bos|>",
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|python_start|>",
    "<|python_end|>",
    "<|output_start|>",
    "<|output_end|>",
)
# nanochat's split pattern (GPT-4's, with numbers grouped 1-2 digits instead of 1-3).
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: byte-level alphabet character -> byte value."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


class Tokenizer:
    """A trained byte-level BPE. ``encode``/``decode`` round-trip any string exactly."""

    def __init__(self, hf_tokenizer) -> None:
        self._tok = hf_tokenizer
        missing = [s for s in SPECIAL_TOKENS if hf_tokenizer.token_to_id(s) is None]
        if missing:
            raise IncompatibleCheckpoint(
                f"tokenizer lacks nanochat special tokens: {', '.join(missing)}",
                "train a new tokenizer (drop data.tokenizer) or use one made by nanochat-tui",
            )

    # ------------------------------------------------------------ construction

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> Tokenizer:
        """Train BPE on ``texts`` to ``vocab_size`` ids (special tokens included)."""
        from tokenizers import Regex, decoders, pre_tokenizers
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers.models import BPE
        from tokenizers.trainers import BpeTrainer

        if vocab_size < 256 + len(SPECIAL_TOKENS):
            raise UserError(
                f"vocab_size {vocab_size} is too small for byte-level BPE",
                f"use at least {256 + len(SPECIAL_TOKENS)}",
            )
        tok = HFTokenizer(BPE(byte_fallback=True, unk_token=None, fuse_unk=False))
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(
                    pattern=Regex(SPLIT_PATTERN), behavior="isolated", invert=False
                ),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = None
        trainer = BpeTrainer(
            vocab_size=vocab_size,
            show_progress=False,
            min_frequency=0,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=list(SPECIAL_TOKENS),
        )
        tok.train_from_iterator(texts, trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: Path | str) -> Tokenizer:
        from tokenizers import Tokenizer as HFTokenizer

        path = Path(path).expanduser()
        if path.is_dir():
            path = path / "tokenizer.json"
        try:
            return cls(HFTokenizer.from_file(str(path)))
        except Exception as err:
            if isinstance(err, UserError):
                raise
            raise UserError(
                f"cannot load tokenizer {path}: {err}",
                "point data.tokenizer at a tokenizer.json written by nanochat-tui",
            ) from None

    @classmethod
    def from_str(cls, text: str) -> Tokenizer:
        from tokenizers import Tokenizer as HFTokenizer

        return cls(HFTokenizer.from_str(text))

    def to_str(self) -> str:
        return self._tok.to_str()

    def save(self, path: Path | str) -> Path:
        """Write tokenizer.json atomically."""
        from nanochat_tui.rundir import write_atomic

        path = Path(path)
        write_atomic(path, self.to_str())
        return path

    # ------------------------------------------------------------ properties

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    @property
    def bos_id(self) -> int:
        return self.special("<|bos|>")

    def special(self, name: str) -> int:
        """Id of a special token, e.g. ``special("<|assistant_end|>")`` (the <||> may be omitted)."""
        token = name if name.startswith("<|") else f"<|{name}|>"
        idx = self._tok.token_to_id(token)
        if idx is None:
            raise KeyError(token)
        return idx

    @cached_property
    def special_ids(self) -> frozenset[int]:
        return frozenset(self.special(s) for s in SPECIAL_TOKENS)

    @cached_property
    def hash(self) -> str:
        """sha256 of the canonical (sorted-key, compact) tokenizer.json, first 16 hex chars."""
        canonical = json.dumps(json.loads(self.to_str()), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    # ------------------------------------------------------------ encode / decode

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def id_to_token(self, idx: int) -> str | None:
        return self._tok.id_to_token(idx)

    def id_to_bytes(self, idx: int) -> bytes:
        """The bytes id ``idx`` stands for (a special token: its name; an unknown id: none)."""
        token = self._tok.id_to_token(idx)
        if token is None:
            return b""
        if idx in self.special_ids:
            return token.encode()
        return bytes(self._byte_values[ch] for ch in token)

    @cached_property
    def _byte_values(self) -> dict[str, int]:
        return _byte_decoder()

    def token_bytes(self) -> np.ndarray:
        """int32[vocab_size]: UTF-8 bytes each id stands for (0 for special tokens), for bpb."""
        dec = _byte_decoder()
        out = np.zeros(self.vocab_size, dtype=np.int32)
        for idx in range(self.vocab_size):
            if idx in self.special_ids:
                continue
            token = self._tok.id_to_token(idx) or ""
            out[idx] = sum(1 for ch in token if ch in dec)
        return out

    # ------------------------------------------------------------ chat format

    def render_conversation(
        self, messages: list[dict], *, for_completion: bool = False
    ) -> list[int]:
        """nanochat chat format: <|bos|>, then <|user_start|>…<|user_end|> and
        <|assistant_start|>…<|assistant_end|> turns. A leading system message is folded into the
        first user turn (as nanochat does). ``for_completion`` appends <|assistant_start|>."""
        msgs = [dict(m) for m in messages]
        if msgs and msgs[0].get("role") == "system":
            system = msgs.pop(0)["content"]
            if msgs and msgs[0].get("role") == "user":
                msgs[0]["content"] = f"{system}\n\n{msgs[0]['content']}"
            else:
                msgs.insert(0, {"role": "user", "content": system})
        ids = [self.bos_id]
        for m in msgs:
            role = m.get("role")
            if role not in ("user", "assistant"):
                raise UserError(
                    f"unknown chat role {role!r}", "use 'user', 'assistant' or 'system'"
                )
            start, end = (
                ("<|user_start|>", "<|user_end|>")
                if role == "user"
                else ("<|assistant_start|>", "<|assistant_end|>")
            )
            ids += [self.special(start), *self.encode(str(m.get("content", ""))), self.special(end)]
        if for_completion:
            ids.append(self.special("<|assistant_start|>"))
        return ids


# ---------------------------------------------------------------- config-driven construction


def _capped(texts: Iterable[str], max_chars: int) -> Iterable[str]:
    used = 0
    for text in texts:
        if used >= max_chars:
            return
        piece = text[: max_chars - used]
        used += len(piece)
        yield piece


def get_tokenizer(config, log=None) -> Tokenizer:
    """The tokenizer a run uses: data.tokenizer if set, else a cached or freshly trained one.

    Cache key: corpus fingerprint + vocab size + tokenizer_chars, under paths.cache_dir().
    """
    from nanochat_tui import paths
    from nanochat_tui.jax_engine.corpus import corpus_fingerprint, iter_documents

    data, vocab = config.data, config.model.vocab_size
    if data.tokenizer:
        tok = Tokenizer.load(data.tokenizer)
        if tok.vocab_size > vocab:
            raise IncompatibleCheckpoint(
                f"tokenizer {data.tokenizer} has {tok.vocab_size} ids but model.vocab_size is {vocab}",
                f"set model.vocab_size={tok.vocab_size} (or larger)",
            )
        return tok
    key = f"{corpus_fingerprint(data)}-v{vocab}-c{data.tokenizer_chars}"
    path = paths.cache_dir() / "tokenizers" / f"{key}.json"
    if path.is_file():
        try:
            return Tokenizer.load(path)
        except UserError:
            path.unlink(missing_ok=True)  # a damaged cache entry: retrain
    if log:
        log(f"training a {vocab}-token BPE tokenizer on {data.tokenizer_chars:,} characters")
    tok = Tokenizer.train(_capped(iter_documents(data), data.tokenizer_chars), vocab)
    tok.save(path)
    return tok
