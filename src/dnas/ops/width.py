"""Searchable width: a fractional channel mask over ordered widths (leading channels kept).

A continuous index θ ∈ [0, n − 1] into widths ``c_0 < … < c_{n−1}``: with ``i = ⌊θ⌋`` (at most
``n − 2``) and ``f = θ − i``, channel ``j`` gets mask 1 for ``j < c_i``, ``f`` for
``c_i ≤ j < c_{i+1}`` and 0 beyond. As in once-for-all, the leading channels are the ones kept, so
the network of a width is a slice of the largest one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dnas.ops.choice import OrderedIndex


class FractionalWidth(OrderedIndex):
    """The hidden width of a block; θ (``arch_index``) indexes ``widths``.

    Args:
        widths: the ordered channel counts.
    """

    def __init__(self, widths: Sequence[int]) -> None:
        widths = tuple(int(c) for c in widths)
        if list(widths) != sorted(set(widths)) or widths[0] < 1:
            raise ValueError(f"widths must be positive and strictly increasing, got {widths}")
        super().__init__(len(widths))
        self.widths = widths
        # band[j]: the smallest option whose width includes channel j.
        band = torch.searchsorted(torch.tensor(widths), torch.arange(widths[-1]), right=True)
        self.register_buffer("band", band, persistent=False)

    @property
    def max_width(self) -> int:
        return self.widths[-1]

    def mask(self) -> Tensor:
        """The channel mask ``[max_width]`` at the current θ (differentiable in θ)."""
        if not self.searchable:
            return torch.ones(self.max_width, device=self.band.device)
        lo, f = self.lower_and_fraction()
        keep = (self.band <= lo).to(f.dtype)
        return torch.where(self.band == lo + 1, f, keep)

    def active_channels(self) -> int:
        """Channels with a non-zero mask or a θ-gradient: ``c_{⌊θ⌋+1}`` (all when not searchable).

        Computing only these leading channels gives the same outputs and gradients as the full
        masked width, at the cost of the width θ points at.
        """
        if not self.searchable:
            return self.max_width
        lo, _ = self.lower_and_fraction()
        return self.widths[int(lo) + 1]

    def width(self) -> int:
        """The discrete width of this forward (discrete modes, see ``ArchChoice.index``)."""
        return self.widths[self.index()]

    def expected_width(self) -> float:
        """The width θ points at, interpolated (for display)."""
        if not self.searchable:
            return float(self.widths[0])
        lo, f = self.lower_and_fraction()
        i = int(lo)
        return self.widths[i] + float(f.detach()) * (self.widths[i + 1] - self.widths[i])

    def extra_repr(self) -> str:
        return f"widths={list(self.widths)}, mode={self.mode!r}"
