"""nanochat's ``tokenizer.pkl`` (a pickled ``tiktoken.Encoding``) to and from our tokenizer.json,
without tiktoken.

A tiktoken encoding is ``mergeable_ranks`` (token bytes → id, the id doubling as the merge
priority), ``special_tokens`` (name → id) and the split regex. Our tokenizer is a byte-level BPE
of HF ``tokenizers`` whose ids follow its merges the same way, so the two convert both ways: a
BPE token's merge pair is what byte-pair merging of its bytes, restricted to lower ranks, ends
with. Reading uses a restricted unpickler (only the encoding's class is resolved, nothing runs);
writing emits the pickle opcodes tiktoken's own ``pickle.dump`` writes.
"""

from __future__ import annotations

import io
import pickle
from functools import cache
from pathlib import Path

from nanochat_tui.errors import UserError
from nanochat_tui.rundir import write_atomic

ENCODING_CLASS = ("tiktoken.core", "Encoding")


@cache
def byte_to_char() -> dict[int, str]:
    """GPT-2's byte-level alphabet: byte value → the printable character standing for it."""
    from nanochat_tui.jax_engine.tokenizer import _byte_decoder

    return {b: c for c, b in _byte_decoder().items()}


def _chars(token: bytes) -> str:
    table = byte_to_char()
    return "".join(table[b] for b in token)


class _EncodingState:
    """Stands in for ``tiktoken.Encoding`` while unpickling: keeps the state dict."""

    def __setstate__(self, state) -> None:
        self.state = state


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ENCODING_CLASS:
            return _EncodingState
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in tokenizer.pkl")


def read_pkl(path: Path) -> tuple[str, dict[bytes, int], dict[str, int]]:
    """``(pat_str, mergeable_ranks, special_tokens)`` of a nanochat ``tokenizer.pkl``."""
    try:
        obj = _Unpickler(io.BytesIO(Path(path).read_bytes())).load()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}", "check the path") from None
    except Exception as err:
        raise UserError(
            f"{path} is not a nanochat tokenizer.pkl: {err}",
            "point --tokenizer at the tokenizer.pkl nanochat wrote ($NANOCHAT_BASE_DIR/tokenizer)",
        ) from None
    state = getattr(obj, "state", None)
    if not isinstance(state, dict) or not {"pat_str", "mergeable_ranks"} <= state.keys():
        why = "a registered encoding name" if isinstance(state, str) else "no encoding state"
        raise UserError(
            f"{path} holds {why}, not nanochat's own BPE",
            "import checkpoints whose tokenizer nanochat trained (tok_train.py)",
        )
    return state["pat_str"], dict(state["mergeable_ranks"]), dict(state.get("special_tokens") or {})


def write_pkl(
    path: Path, pat_str: str, ranks: dict[bytes, int], specials: dict[str, int], name: str
) -> None:
    """Write what ``pickle.dump(tiktoken.Encoding(name, pat_str=..., ...))`` writes."""
    state = {"name": name, "pat_str": pat_str, "mergeable_ranks": ranks, "special_tokens": specials}
    body = pickle.dumps(state, protocol=3)  # protocol 3: bytes natively, no framing
    assert body[:2] == b"\x80\x03" and body[-1:] == b"."
    module, cls = ENCODING_CLASS
    data = (
        b"\x80\x03"  # PROTO 3
        + f"c{module}\n{cls}\n".encode()  # GLOBAL tiktoken.core.Encoding
        + b")\x81"  # EMPTY_TUPLE, NEWOBJ: Encoding.__new__(Encoding)
        + body[2:-1]  # the state dict
        + b"b."  # BUILD (__setstate__ → __init__(**state)), STOP
    )
    write_atomic(Path(path), data)


def ranks_of(tokenizer) -> tuple[dict[bytes, int], dict[str, int]]:
    """Our tokenizer as tiktoken's ``(mergeable_ranks, special_tokens)`` (ids unchanged)."""
    from nanochat_tui.jax_engine.tokenizer import SPECIAL_TOKENS, _byte_decoder

    decode = _byte_decoder()
    specials = {s: tokenizer.special(s) for s in SPECIAL_TOKENS}
    special_ids = set(specials.values())
    ranks: dict[bytes, int] = {}
    for idx in range(tokenizer.vocab_size):
        if idx in special_ids:
            continue
        token = tokenizer.id_to_token(idx) or ""
        if any(ch not in decode for ch in token):
            raise UserError(
                f"token {idx} ({token!r}) is not byte-level BPE",
                "only tokenizers trained by nanochat-tui or nanochat export to tokenizer.pkl",
            )
        ranks[bytes(decode[ch] for ch in token)] = idx
    return ranks, specials


def _merge_pair(ranks: dict[bytes, int], token: bytes) -> tuple[bytes, bytes]:
    """The two parts byte-pair merging of ``token`` stops at, using only lower-ranked merges."""
    limit = ranks[token]
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, where = None, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < limit and (best is None or r < best):
                best, where = r, i
        if best is None:
            break
        parts[where : where + 2] = [parts[where] + parts[where + 1]]
    if len(parts) != 2:
        raise UserError(
            f"token {token!r} (id {limit}) cannot be built from lower-ranked merges",
            "the tokenizer.pkl is not a BPE nanochat trained",
        )
    return parts[0], parts[1]


def tokenizer_from_ranks(pat_str: str, ranks: dict[bytes, int], specials: dict[str, int]):
    """Our ``Tokenizer`` (HF byte-level BPE) encoding exactly as the tiktoken encoding does."""
    from tokenizers import Regex, decoders, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.models import BPE

    from nanochat_tui.jax_engine.tokenizer import Tokenizer

    missing = [bytes([b]) for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise UserError(
            f"tokenizer.pkl lacks {len(missing)} of the 256 single bytes",
            "the tokenizer.pkl is not a byte-level BPE nanochat trained",
        )
    vocab = {_chars(token): idx for token, idx in ranks.items()}
    vocab.update(specials)
    merges = [
        tuple(_chars(p) for p in _merge_pair(ranks, token))
        for token, _ in sorted(ranks.items(), key=lambda kv: kv[1])
        if len(token) > 1
    ]
    tok = HFTokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=True))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(pattern=Regex(pat_str), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(sorted(specials, key=specials.get))
    for name, idx in specials.items():
        if tok.token_to_id(name) != idx:
            raise UserError(
                f"special token {name} would get id {tok.token_to_id(name)}, not {idx}",
                "the tokenizer.pkl's ids are not contiguous",
            )
    return Tokenizer(tok)
