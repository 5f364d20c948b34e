"""Errors meant for a person: one readable message plus what to do about it."""

from __future__ import annotations


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


class ResumeRefused(IncompatibleCheckpoint):
    """A ``--resume`` refused before any step (nothing to resume, damaged checkpoint, tokenizer or
    model mismatch). The engine emitted no event and changed no file: callers must leave the
    run's record and events as they were."""
