"""The error raised for an invalid search space or architecture, naming the offending field."""

from __future__ import annotations

from dnas.errors import DnasError


class SpaceError(DnasError):
    """An invalid search-space config or architecture.

    The message starts with the dotted path of the offending field (``stages[1].kernels: ...``),
    so a user can find it in their YAML.

    Attributes:
        field: dotted path of the offending field, e.g. ``stages[1].kernels``.
        reason: what is wrong with it.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)

    def within(self, prefix: str) -> SpaceError:
        """The same error with ``prefix`` prepended to its field path."""
        return SpaceError(f"{prefix}.{self.field}" if self.field else prefix, self.reason)
