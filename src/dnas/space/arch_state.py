"""ArchState: a discrete architecture as grid indices, what cost tables, derive and evolve work on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dnas.space.architecture import Architecture, BlockChoice, ConvBits
from dnas.space.layers import BLOCK_ROLES, FIXED_ROLES, LayerKey

if TYPE_CHECKING:
    from dnas.space.search_space import SearchSpace


@dataclass
class ArchState:
    """A discrete architecture as grid indices (what the table and the repair step work on).

    Attributes:
        kernel: block -> index into ``space.kernel_choices(block)`` (``skip`` is the last choice).
        width: block -> index into the block's widths.
        bits: layer key -> (w_bits index, a_bits index) into that costed layer's bit lists; a
            skipped block's layers keep theirs (they have no effect).
    """

    kernel: dict[int, int]
    width: dict[int, int]
    bits: dict[LayerKey, tuple[int, int]] = field(default_factory=dict)

    def copy(self) -> ArchState:
        return ArchState(dict(self.kernel), dict(self.width), dict(self.bits))

    @classmethod
    def from_arch(cls, space: SearchSpace, arch: Architecture) -> ArchState:
        space.validate_arch(arch)
        layers = {c.key: c for c in space.costed_layers()}
        kernel, width, bits = {}, {}, {}
        for b, c in zip(space.blocks, arch.blocks):
            kernel[b.index] = space.kernel_choices(b.index).index(c.kernel)
            width[b.index] = b.widths.index(c.width)
            for role in BLOCK_ROLES:
                cb = c.conv_bits(role)
                key = LayerKey(role, b.index)
                if cb is not None and key in layers:
                    bits[key] = (
                        layers[key].w_bits.index(cb.w_bits),
                        layers[key].a_bits.index(cb.a_bits),
                    )
        for role in FIXED_ROLES:
            cb, key = getattr(arch, role), LayerKey(role)
            bits[key] = (layers[key].w_bits.index(cb.w_bits), layers[key].a_bits.index(cb.a_bits))
        return cls(kernel, width, bits)

    def to_arch(self, space: SearchSpace) -> Architecture:
        layers = {c.key: c for c in space.costed_layers()}

        def conv(key: LayerKey) -> ConvBits | None:
            if key not in layers:
                return None
            wi, ai = self.bits[key]
            return ConvBits(layers[key].w_bits[wi], layers[key].a_bits[ai])

        blocks = tuple(
            BlockChoice(
                kernel=space.kernel_choices(b.index)[self.kernel[b.index]],
                width=b.widths[self.width[b.index]],
                expand=conv(LayerKey("expand", b.index)),
                dw=conv(LayerKey("dw", b.index)),
                project=conv(LayerKey("project", b.index)),
            )
            for b in space.blocks
        )
        return Architecture(
            blocks=blocks,
            stem=conv(LayerKey("stem")),
            last=conv(LayerKey("last")),
            classifier=conv(LayerKey("classifier")),
            space=space.name,
            space_fingerprint=space.fingerprint(),
        )
