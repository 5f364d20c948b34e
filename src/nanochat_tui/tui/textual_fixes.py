"""Work-arounds for known Textual bugs, each with its upstream issue; remove one when it is fixed.

- Textualize/textual#6581: a ``Select`` with an initial value can update its ``SelectCurrent``
  before that widget's ``#label`` child is mounted, and the app crashes with ``NoMatches`` (seen in
  CI on a loaded machine, while the app started). Here an update that comes too early is replayed
  once the label exists; a newer update supersedes a pending one.
- The same race one level up (Textual 8.2.8): ``Select`` fills its ``SelectOverlay`` (options,
  highlight) from its value watcher and ``set_options`` without checking that the overlay is
  mounted, and CI once crashed with ``NoMatches: 'SelectOverlay'`` on the Config pane's prefab
  picker on a loaded machine. Here such a call is replayed once the overlay exists, with the
  newest value and options; the ``Changed`` message is posted then.
- Timer slot skipping (Textual 8.2.8, ``Timer._run``): when a repeating timer with ``skip=True``
  is behind schedule (a tick ran late, or the timer was paused past its slot), it recomputes its
  slot count one too high and sleeps to the slot *after* the next one: 1-2 intervals instead of
  0-1. The screen's update timer (60 Hz) is paused while idle and resumed by a change, so a
  change that comes soon after a frame waited 17-33 ms for its repaint instead of at most 17 ms
  (measured: a screen switch resumed the timer and its frame came 24-28 ms later with nothing
  else running). Here the count is the slot just passed, so the next tick is the next slot.
"""

from __future__ import annotations

from typing import Any


def apply() -> None:
    """Install the work-arounds (idempotent)."""
    _fix_select_label()
    _fix_select_overlay()
    _fix_timer_skip()


def _fix_timer_skip() -> None:
    from textual import _time
    from textual.timer import EventTargetGone, Timer

    if getattr(Timer._run, "_nanochat_fixed", False):
        return

    async def _run(self: Any) -> None:
        count = 0
        repeat = self._repeat
        interval = self._interval
        self._active  # noqa: B018 - create the Event in this task's loop, as upstream does
        await self._active.wait()
        start = _time.get_time()
        while repeat is None or count <= repeat:
            next_timer = start + (count + 1) * interval
            now = _time.get_time()
            if self._skip and next_timer < now:
                count = int((now - start) / interval)  # upstream: + 1, one slot too far
                continue
            await _time.sleep(max(0.0, next_timer - now))
            count += 1
            await self._active.wait()
            if self._reset:
                start = _time.get_time()
                count = 0
                self._reset = False
                continue
            try:
                await self._tick(next_timer=next_timer, count=count)
            except EventTargetGone:
                break

    _run._nanochat_fixed = True  # type: ignore[attr-defined]
    Timer._run = _run  # type: ignore[method-assign]


def _fix_select_label() -> None:
    from textual.css.query import NoMatches
    from textual.widgets._select import SelectCurrent

    original = SelectCurrent.update
    if getattr(original, "_nanochat_guarded", False):
        return

    def update(self: Any, label: Any) -> None:
        self._nanochat_label = label
        try:
            original(self, label)
        except NoMatches:

            def replay() -> None:
                if self._nanochat_label is label:  # nothing newer came meanwhile
                    update(self, label)

            self.call_after_refresh(replay)

    update._nanochat_guarded = True  # type: ignore[attr-defined]
    SelectCurrent.update = update  # type: ignore[method-assign]


def _fix_select_overlay() -> None:
    from textual.css.query import NoMatches
    from textual.widgets import Select

    if getattr(Select._watch_value, "_nanochat_guarded", False):
        return
    setup_options = Select._setup_options_renderables
    watch_value = Select._watch_value

    def _setup_options_renderables(self: Any) -> None:
        try:
            setup_options(self)
        except NoMatches:
            options = self._options

            def replay() -> None:
                if self._options is options and self.is_attached:  # no newer options meanwhile
                    _setup_options_renderables(self)

            self.call_after_refresh(replay)

    def _watch_value(self: Any, value: Any) -> None:
        try:
            watch_value(self, value)
        except NoMatches:

            def replay() -> None:
                if self._value is value and self.is_attached:  # no newer value meanwhile
                    _watch_value(self, value)

            self.call_after_refresh(replay)

    _watch_value._nanochat_guarded = True  # type: ignore[attr-defined]
    Select._setup_options_renderables = _setup_options_renderables  # type: ignore[method-assign]
    Select._watch_value = _watch_value  # type: ignore[method-assign]
