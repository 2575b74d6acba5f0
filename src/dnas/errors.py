"""The one base of every error a user can fix by changing their input.

The commands print a ``DnasError`` as one line naming the problem and what is allowed, and exit
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class DnasError(ValueError):
    """Bad input: a config, file, shape or budget that cannot be used (the message says why)."""


class NonFiniteLossError(FloatingPointError):
    """A NaN or infinite loss: the run stops rather than train on garbage."""


class Interrupted(Exception):
    """A run stopped before it finished: a signal, or a non-finite loss (the message says where
    its last checkpoint is)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
