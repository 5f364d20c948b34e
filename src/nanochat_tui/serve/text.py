"""Generated ids → text pieces for a client, with stop strings.

A piece is released only when it is final: an incomplete UTF-8 character (the decoder's ``\\ufffd``)
waits for its next token, and text that could still grow into a stop string waits until it cannot.
The stop string itself and everything after it are never sent. ``offsets[i]`` is where the i-th
token's text starts (the length of the whole characters decoded before it), for logprobs.
"""

from __future__ import annotations


class TextStream:
    """Feed ids with ``push``; each returns the text now safe to send. ``stopped`` turns True when
    a stop string appears; ``flush`` returns what is held back once generation ends."""

    def __init__(self, tokenizer, stops: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.ids: list[int] = []
        self.offsets: list[int] = []
        self.decoded = 0  # characters decoded so far, up to the last whole one
        self.sent = 0  # characters of the decoded text already released
        self.stopped = False

    def push(self, tok: int) -> str:
        self.offsets.append(self.decoded)
        self.ids.append(tok)
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""
        self.decoded = len(text)
        return self._release(text, final=False)

    def flush(self) -> str:
        if self.stopped:
            return ""
        return self._release(self.tokenizer.decode(self.ids), final=True)

    def _release(self, text: str, *, final: bool) -> str:
        if self.stops:
            longest = max(len(s) for s in self.stops)
            start = max(0, self.sent - longest + 1)
            hits = [i for s in self.stops if (i := text.find(s, start)) >= 0]
            if hits:
                self.stopped = True
                end = max(min(hits), self.sent)
                piece, self.sent = text[self.sent : end], end
                return piece
            if not final:
                text = text[: len(text) - _held(text, self.stops)]
        piece = text[self.sent :]
        self.sent = max(self.sent, len(text))
        return piece


def _held(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
