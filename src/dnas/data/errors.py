"""Errors raised for data sets that are missing or damaged, naming the file and what is wrong."""

from __future__ import annotations

from dnas.errors import DnasError


class DatasetError(DnasError):
    """A data file that cannot be used: damaged, truncated, of the wrong format or shape.

    The message starts with the offending file's path, so a user knows which file to replace.
    """


class DatasetNotFoundError(DatasetError):
    """A data set whose files are not where they were looked for.

    The message lists every candidate path that was tried and how to install the data set.
    """
