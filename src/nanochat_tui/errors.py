"""Errors meant for a person: one readable message plus what to do about it."""

from __future__ import annotations

import errno


class UserError(Exception):
    """Raised for bad input or a known failure; the CLI prints it without a traceback."""

    def __init__(self, message: str, remediation: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.remediation = remediation

    def __str__(self) -> str:
        return f"{self.message}\n  → {self.remediation}" if self.remediation else self.message


class IncompatibleCheckpoint(UserError):
    """A checkpoint that does not fit the config/tokenizer it is being loaded with."""


class TrainingDiverged(UserError):
    """Loss became NaN/inf; names the last good checkpoint."""


class OutOfMemory(UserError):
    """Device ran out of memory; suggests a smaller device batch."""


class DiskFull(UserError):
    """A write found no space left on the device (ENOSPC): names how much to free, and where."""


def is_disk_full(err: BaseException | None) -> bool:
    """Whether ``err`` or what caused it is a write that found no space left (ENOSPC). Orbax
    reports tensorstore's as ``RESOURCE_EXHAUSTED: Error writing … No space left on device``,
    which must not be read as device memory running out."""
    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return True
        text = str(err)
        if "No space left on device" in text or "ENOSPC" in text:
            return True
        if "RESOURCE_EXHAUSTED" in text and "Error writing" in text:
            return True
        err = err.__cause__ or err.__context__
        seen += 1
    return False


class ResumeRefused(IncompatibleCheckpoint):
    """A ``--resume`` refused before any step (nothing to resume, damaged checkpoint, tokenizer or
    model mismatch). The engine emitted no event and changed no file: callers must leave the
    run's record and events as they were."""
