"""User-facing errors.

Anything a user can fix (a typo in a recipe, a missing dataset, a checkpoint for another model)
raises :class:`UserError`. The CLI prints ``error: <message>`` on one line and exits with code 2.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by user input; the message says what is wrong and how to fix it."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # One line: the CLI contract promises a single-line message.
        super().__init__(" ".join(str(message).split()))


class ConfigError(UserError):
    """A recipe is malformed: unknown key, wrong type, invalid value."""


class DataError(UserError):
    """Data is missing, unreadable or corrupt."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt or belongs to another model."""


class IndexError_(UserError):
    """A gallery index is missing, corrupt or incompatible with the query model."""
