"""The relaxed architecture: what the differentiable expected cost reads from a supernet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:
    from dnas.space import LayerKey


@dataclass
class RelaxedArch:
    """The supernet's current distribution over architectures, differentiable in its parameters.

    Attributes:
        kernel_probs: block index → ``softmax(α)`` over ``space.kernel_choices(block)`` (same
            order, ``"skip"`` last when offered); ``tensor([1.])`` for a single choice.
        width_index: block index → θ, the continuous index into the block's widths (0-dim).
        bit_index: every costed layer key (``space.costed_layers()``) → ``(β_w, β_a)``, continuous
            indices into that layer's ``w_bits`` / ``a_bits`` (0-dim; constant 0 for a single
            choice).
    """

    kernel_probs: dict[int, Tensor]
    width_index: dict[int, Tensor]
    bit_index: dict[LayerKey, tuple[Tensor, Tensor]]
