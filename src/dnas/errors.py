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


def read_text(path, what: str, kind: str = "YAML") -> str:
    """The text of a file the user named, or one line saying why it cannot be read as text.

    Args:
        path: the file (``str`` or ``Path``).
        what: how messages name it (``"search space"``, ``"hardware config"``, ...).
        kind: the kind of text expected, for the message (``"YAML"``, ``"CSV"``).

    Raises:
        DnasError: a directory, or bytes that are not UTF-8 text (a binary file, UTF-16): the
            message names the file and the offending byte. A missing file raises
            ``FileNotFoundError`` as ``open`` does (callers say it in their own words).
    """
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise DnasError(f"{what} {p} is a directory; give a {kind} file")
    try:
        return p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DnasError(
            f"{what} {p} is not UTF-8 text (byte {e.start}: {e.reason}); give a {kind} file"
        ) from None
