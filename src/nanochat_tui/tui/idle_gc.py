"""Full (generation 2) garbage collections at quiet moments, not in the middle of a frame.

CPython starts a full collection when enough objects survived the younger generations; with the
app, a metric store and a run in memory one takes 10-25 ms (after ``gc.freeze``), and it lands
wherever the allocation count says: often inside the frame that answers a key (measured: 5 of
150 screen switches each lost 10-25 ms to one). While the app runs, automatic full collections
are off; ``tick`` runs one once no key or mouse press has come for ``quiet_s`` and ``every_s``
have passed since the last, and regardless after ``at_most_s``, so cyclic garbage is still
reclaimed within minutes. The younger generations (sub-millisecond) stay automatic.
``uninstall`` puts the interpreter's thresholds back. ``clock`` is ``time.monotonic`` unless a
test passes its own.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

NO_AUTOMATIC_FULL = 1 << 30  # generation-2 threshold that the count never reaches


class IdleCollector:
    def __init__(
        self,
        quiet_s: float = 1.0,
        every_s: float = 30.0,
        at_most_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.clock = clock
        self.quiet_s = quiet_s
        self.every_s = every_s
        self.at_most_s = at_most_s
        self.collections = 0
        self._saved: tuple[int, int, int] | None = None
        self._last_input = self._last_full = clock()

    def install(self) -> None:
        if self._saved is None:
            self._saved = gc.get_threshold()
            gen0, gen1, _ = self._saved
            gc.set_threshold(gen0, gen1, NO_AUTOMATIC_FULL)

    def uninstall(self) -> None:
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None

    def input_seen(self) -> None:
        self._last_input = self.clock()

    def tick(self) -> bool:
        """Run a full collection if it is due and the user is not typing; True if it ran."""
        now = self.clock()
        since = now - self._last_full
        quiet = now - self._last_input >= self.quiet_s
        if (since >= self.every_s and quiet) or since >= self.at_most_s:
            gc.collect()
            self._last_full = self.clock()
            self.collections += 1
            return True
        return False
