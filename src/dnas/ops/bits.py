"""Searchable bit-widths: weight and activation quantizers with a fractional bit index (FracBits).

FracBits (Yang & Jin, arXiv 2007.02017): a continuous index β into the ordered bit list; in gumbel
mode ``Q(x) = (1 − f)·Q_{b⌊β⌋}(x) + f·Q_{b⌊β⌋+1}(x)``, in the discrete modes one fixed bit-width.
Activation clips follow PACT (Choi et al. 2018).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dnas.ops.choice import OrderedIndex
from dnas.quant import (
    levels_tensor,
    quantize_act,
    quantize_act_frac,
    quantize_weight,
    quantize_weight_frac,
)


class BitChoice(OrderedIndex):
    """The bit-width of one tensor, from an ordered list; β (``arch_index``) indexes it.

    Attributes:
        bits: the ordered bit-widths.
    """

    def __init__(self, bits: Sequence[int]) -> None:
        bits = tuple(int(b) for b in bits)
        if list(bits) != sorted(set(bits)):
            raise ValueError(f"bit-widths must be strictly increasing, got {list(bits)}")
        super().__init__(len(bits))
        self.bits = bits

    def expected_bits(self) -> float:
        """The bit-width β points at, interpolated (for display)."""
        if not self.searchable:
            return float(self.bits[0])
        lo, f = self.lower_and_fraction()
        i = int(lo)
        return self.bits[i] + float(f.detach()) * (self.bits[i + 1] - self.bits[i])

    def extra_repr(self) -> str:
        return f"bits={list(self.bits)}, mode={self.mode!r}"


class WeightQuantizer(nn.Module):
    """Symmetric per-output-channel weight quantizer at a searchable bit-width.

    Args:
        bits: the bit-width choices (each ≥ 2).
    """

    def __init__(self, bits: Sequence[int]) -> None:
        super().__init__()
        self.bits = BitChoice(bits)
        self.register_buffer("levels", levels_tensor(self.bits.bits, True, weight=True), False)

    def forward(self, w: Tensor) -> Tensor:
        """Quantize ``w`` ``[O, ...]``; same shape."""
        if self.bits.relaxed:
            return quantize_weight_frac(w, self.bits.value(), self.levels)
        return quantize_weight(w, self.bits.bits[self.bits.index()])


class ActQuantizer(nn.Module):
    """Activation quantizer with a learnable clip α (PACT) at a searchable bit-width.

    Unsigned (range ``[0, α]``) for inputs that come from a ReLU: it then *is* that ReLU, which is
    why the networks here have no separate ReLU before a quantized conv. Signed (``[−α, α]``) for
    inputs that can be negative.

    Args:
        bits: the bit-width choices.
        signed: symmetric range (≥ 2 bits).
        clip: initial α. The parameter is named ``clip`` (a weight parameter, not an
            architecture one).
    """

    def __init__(self, bits: Sequence[int], signed: bool = False, clip: float = 6.0) -> None:
        super().__init__()
        self.signed = signed
        self.bits = BitChoice(bits)
        self.clip = nn.Parameter(torch.tensor(float(clip)))
        self.register_buffer("levels", levels_tensor(self.bits.bits, signed), False)

    def forward(self, x: Tensor) -> Tensor:
        """Quantize ``x`` (any shape, e.g. ``[B, C, H, W]``); same shape and memory format."""
        if self.bits.relaxed:
            return quantize_act_frac(x, self.clip, self.bits.value(), self.levels, self.signed)
        return quantize_act(x, self.clip, self.bits.bits[self.bits.index()], self.signed)

    def extra_repr(self) -> str:
        return f"signed={self.signed}"
