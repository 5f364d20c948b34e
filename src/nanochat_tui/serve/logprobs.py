"""Generated tokens' logprobs in OpenAI's response shapes.

Chat (``logprobs: true``, ``top_logprobs`` 0..20)::

    choices[i].logprobs = {"content": [{"token", "logprob", "bytes",
                                        "top_logprobs": [{"token", "logprob", "bytes"}, ...]}],
                           "refusal": None}

Completions (``logprobs`` 0..5)::

    choices[i].logprobs = {"tokens": [...], "token_logprobs": [...],
                           "top_logprobs": [{token: logprob, ...}, ...], "text_offset": [...]}

where each ``top_logprobs`` dict holds the ``logprobs`` likeliest tokens and the sampled one (up to
``logprobs + 1`` entries, as OpenAI's), and ``text_offset`` is where each token starts in the
returned text. A token that is not whole UTF-8 on its own (part of a character) is written as
``bytes:\\xe2\\x80`` in ``token``, as OpenAI writes it; ``bytes`` always holds its raw bytes.
The values are the model's own log-probabilities (``serve/sampling.py``).
"""

from __future__ import annotations

from nanochat_tui.serve.sampling import TokenLogprob


class TokenText:
    """``(token string, raw bytes)`` of an id under ``tokenizer``, remembered once looked up."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._known: dict[int, tuple[str, list[int]]] = {}

    def __call__(self, idx: int) -> tuple[str, list[int]]:
        if idx not in self._known:
            raw = self.tokenizer.id_to_bytes(idx)
            try:
                token = raw.decode("utf-8")
            except UnicodeDecodeError:
                token = "bytes:" + "".join(f"\\x{b:02x}" for b in raw)
            self._known[idx] = (token, list(raw))
        return self._known[idx]


def chat_logprobs(ids: list[int], lps: list[TokenLogprob], text: TokenText) -> dict:
    """``choices[i].logprobs`` of a chat reply (or of one streamed chunk's tokens)."""

    def entry(idx: int, logprob: float) -> dict:
        token, raw = text(idx)
        return {"token": token, "logprob": logprob, "bytes": raw}

    content = [
        {**entry(idx, lp.logprob), "top_logprobs": [entry(i, v) for i, v in lp.top]}
        for idx, lp in zip(ids, lps, strict=True)
    ]
    return {"content": content, "refusal": None}


def completion_logprobs(
    ids: list[int], lps: list[TokenLogprob], offsets: list[int], text: TokenText
) -> dict:
    """``choices[i].logprobs`` of a text completion (or of one streamed chunk's tokens)."""
    tops = []
    for idx, lp in zip(ids, lps, strict=True):
        top = {text(i)[0]: v for i, v in lp.top}
        top.setdefault(text(idx)[0], lp.logprob)
        tops.append(top)
    return {
        "tokens": [text(idx)[0] for idx in ids],
        "token_logprobs": [lp.logprob for lp in lps],
        "top_logprobs": tops,
        "text_offset": list(offsets),
    }
