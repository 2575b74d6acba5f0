"""The base of every searchable choice: its sampling mode and the discrete index it uses.

Modes (shared by all ops, set by ``SuperNet.set_mode``):

- ``"gumbel"``: the search relaxation: Gumbel-softmax for kernels, fractional channel masks for
  widths, fractional bit-widths for bits; gradients reach the architecture parameters.
- ``"uniform"``: warm-up: each forward draws every choice uniformly, so all weights get trained.
- ``"fixed"``: a given discrete choice (evaluating a derived architecture inside the supernet).
- ``"argmax"``: the currently most likely discrete choice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import torch
from torch import nn

from dnas.space import nearest_index

Mode = Literal["gumbel", "uniform", "fixed", "argmax"]
MODES: tuple[str, ...] = ("gumbel", "uniform", "fixed", "argmax")
ARCH_PREFIX = "arch_"
"""Every architecture parameter's attribute name starts with this (and no weight's does)."""


def check_mode(mode: str) -> str:
    """``mode`` if it is one of ``MODES``; a ValueError naming the allowed ones otherwise."""
    if mode not in MODES:
        raise ValueError(f"unknown sampling mode {mode!r}; allowed: {list(MODES)}")
    return mode


class ArchChoice(nn.Module, ABC):
    """One choice among ``num_choices`` options, with a sampling mode.

    Subclasses own the architecture parameter (named ``arch_*``) of the relaxation and implement
    ``argmax``; this class handles the discrete modes.

    Attributes:
        num_choices: number of options.
        mode: the current sampling mode.
        last_index: the discrete index used by the last ``index()`` call (``None`` before one).
    """

    def __init__(self, num_choices: int) -> None:
        super().__init__()
        if num_choices < 1:
            raise ValueError(f"a choice needs at least one option, got {num_choices}")
        self.num_choices = num_choices
        self.mode: str = "gumbel"
        self._fixed: int | None = None
        self.last_index: int | None = None

    @property
    def searchable(self) -> bool:
        """Whether there is anything to choose (more than one option)."""
        return self.num_choices > 1

    @property
    def relaxed(self) -> bool:
        """Whether the forward uses the continuous relaxation (gumbel mode, several options)."""
        return self.mode == "gumbel" and self.searchable

    def set_mode(self, mode: str, index: int | None = None) -> None:
        """Set the sampling mode; ``index`` is the option to use in mode ``"fixed"``."""
        check_mode(mode)
        if mode == "fixed":
            if index is None or not 0 <= index < self.num_choices:
                raise ValueError(f"mode 'fixed' needs an index in 0..{self.num_choices - 1}")
            self._fixed = int(index)
        self.mode = mode

    @abstractmethod
    def argmax(self) -> int:
        """The most likely option under the current architecture parameters."""

    def index(self) -> int:
        """The discrete option of this forward: drawn (uniform), given (fixed) or argmax.

        In gumbel mode only an op with a single option has one (0); the others are relaxed.
        """
        if not self.searchable:
            i = 0
        elif self.mode == "uniform":
            i = int(torch.randint(self.num_choices, ()).item())
        elif self.mode == "fixed":
            assert self._fixed is not None
            i = self._fixed
        elif self.mode == "argmax":
            i = self.argmax()
        else:
            raise RuntimeError("a relaxed choice has no discrete index in gumbel mode")
        self.last_index = i
        return i

    def clamp_(self) -> None:
        """Project the architecture parameter back onto its range (no-op by default)."""

    def extra_repr(self) -> str:
        return f"num_choices={self.num_choices}, mode={self.mode!r}"


class OrderedIndex(ArchChoice):
    """A continuous index θ ∈ [0, n − 1] into an ordered list (widths, bit-widths).

    The parameter is ``arch_index`` (0-dim), registered only when there are several options;
    it starts at ``n − 1`` (the largest option), so a search starts from the largest network.
    """

    def __init__(self, num_choices: int) -> None:
        super().__init__(num_choices)
        if self.searchable:
            self.arch_index = nn.Parameter(torch.tensor(float(num_choices - 1)))
        else:
            self.register_buffer("_zero", torch.zeros(()), persistent=False)

    def value(self) -> torch.Tensor:
        """The continuous index (0-dim): the parameter, or a constant 0 for a single option."""
        return self.arch_index if self.searchable else self._zero

    def argmax(self) -> int:
        """The nearest option to θ (``dnas.space.nearest_index``: clamped, ties round up)."""
        if not self.searchable:
            return 0
        return nearest_index(float(self.arch_index.detach()), self.num_choices)

    def lower_and_fraction(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(i, f)``: lower option ``i`` ≤ n − 2 and fraction ``f = θ − i`` ∈ [0, 1] (0-dim)."""
        theta = self.value()
        lo = theta.detach().floor().clamp(0, self.num_choices - 2)
        return lo, theta - lo

    @torch.no_grad()
    def clamp_(self) -> None:
        if self.searchable:
            self.arch_index.clamp_(0, self.num_choices - 1)
