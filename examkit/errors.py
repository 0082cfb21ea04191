"""Errors examkit raises: one message for the examiner, one hint on what to do."""

from __future__ import annotations


class ExamkitError(Exception):
    """Base error: ``message`` says what went wrong, ``hint`` what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(ExamkitError):
    """The request itself is wrong (options, arguments, state of the case)."""

    exit_code = 2


class EvidenceError(ExamkitError):
    """Evidence cannot be found, opened or read."""


class CaseError(ExamkitError):
    """The case database cannot be created, opened or written."""


class PluginError(ExamkitError):
    """A plugin is missing, invalid or registered twice."""


class IntegrityError(ExamkitError):
    """A verification failed: evidence or records do not match what was recorded."""

    exit_code = 3
