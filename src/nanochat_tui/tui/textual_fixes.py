"""Work-arounds for known Textual bugs, each with its upstream issue; remove one when it is fixed.

- Textualize/textual#6581: a ``Select`` with an initial value can update its ``SelectCurrent``
  before that widget's ``#label`` child is mounted, and the app crashes with ``NoMatches`` (seen in
  CI on a loaded machine, while the app started). Here an update that comes too early is replayed
  once the label exists; a newer update supersedes a pending one.
"""

from __future__ import annotations

from typing import Any


def apply() -> None:
    """Install the work-arounds (idempotent)."""
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
