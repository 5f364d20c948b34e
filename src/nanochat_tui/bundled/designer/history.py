"""Undo/redo over immutable design snapshots."""

from __future__ import annotations

from nanochat_tui.bundled.designer.design import Design

LIMIT = 200


class History:
    """``current`` plus the snapshots before (undo) and after it (redo)."""

    def __init__(self, design: Design) -> None:
        self.current = design
        self._undo: list[Design] = []
        self._redo: list[Design] = []

    def push(self, design: Design) -> Design:
        """Make ``design`` current; the old one can be undone, the redo list is dropped."""
        if design == self.current:
            return design
        self._undo.append(self.current)
        del self._undo[:-LIMIT]
        self._redo.clear()
        self.current = design
        return design

    def undo(self) -> bool:
        if not self._undo:
            return False
        self._redo.append(self.current)
        self.current = self._undo.pop()
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        self._undo.append(self.current)
        self.current = self._redo.pop()
        return True
