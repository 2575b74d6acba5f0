"""From a searched supernet to a discrete Architecture within budget, and to a static child net."""

from dnas.derive.budget import derive_within_budget
from dnas.space import ArchState

__all__ = ["ArchState", "derive_within_budget"]
