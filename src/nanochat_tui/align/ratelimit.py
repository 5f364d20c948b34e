"""Client-side limits for talking to a rate-limited endpoint: token buckets and a backoff schedule.

``Limiter`` keeps two buckets, requests per minute and tokens per minute. The request bucket holds
one request, so requests are spaced at least ``60 / rpm`` seconds apart (a provider counting per
minute never sees more than ``rpm``). The token bucket holds ten seconds' worth of tokens
(at least one request's estimate, so a large request cannot wait forever); a request takes its
estimate (prompt characters / 4 + ``max_tokens``) before it is sent, and the difference to the
reply's real usage is settled afterwards, so the level may go negative and later requests wait.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable


class TokenBucket:
    """A bucket of ``capacity`` that refills at ``rate`` per second; ``take`` waits for enough."""

    def __init__(
        self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = rate
        self.capacity = capacity
        self.clock = clock
        self.level = capacity
        self.stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self, amount: float) -> float:
        """Seconds until ``amount`` (capped at the capacity) is available; 0 when it is now."""
        self._refill()
        need = min(amount, self.capacity)
        return max(0.0, (need - self.level) / self.rate)

    async def take(self, amount: float) -> float:
        """Wait until ``amount`` is available, take it; returns the seconds waited. FIFO."""
        waited = 0.0
        async with self._lock:
            while (delay := self.wait_time(amount)) > 0:
                await asyncio.sleep(delay)
                waited += delay
            self.level -= amount
        return waited

    def settle(self, extra: float) -> None:
        """Take ``extra`` more (negative gives back) once the real cost is known."""
        self._refill()
        self.level = min(self.capacity, self.level - extra)


class Limiter:
    """Requests-per-minute and tokens-per-minute limits (``None`` = unlimited)."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None) -> None:
        self.requests = TokenBucket(rpm / 60.0, 1.0) if rpm else None
        self.tpm = tpm
        self.tokens: TokenBucket | None = None

    async def acquire(self, estimate: int) -> float:
        """Wait for a request slot and ``estimate`` tokens; returns the seconds waited."""
        waited = 0.0
        if self.tpm:
            if self.tokens is None:
                self.tokens = TokenBucket(self.tpm / 60.0, max(self.tpm / 6.0, estimate))
            waited += await self.tokens.take(estimate)
        if self.requests is not None:
            waited += await self.requests.take(1.0)
        return waited

    def settle(self, estimate: int, used: int) -> None:
        """Correct the token bucket with the reply's real usage."""
        if self.tokens is not None:
            self.tokens.settle(used - estimate)


def estimate_tokens(messages: list[dict], max_tokens: int) -> int:
    """A conservative token estimate for a chat request: 4 characters a token, plus the reply."""
    chars = sum(len(str(m.get("content", ""))) + 8 for m in messages)
    return chars // 4 + 1 + max_tokens


def backoff_delay(
    attempt: int,
    retry_after: float | None = None,
    base: float = 1.0,
    cap: float = 60.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): the server's ``Retry-After`` when it
    sent one, else exponential ``base * 2**attempt`` with ±25% jitter, at most ``cap``."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), cap)
    jitter = 1.0 + ((rng or random).random() - 0.5) / 2
    return min(base * 2**attempt * jitter, cap)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
