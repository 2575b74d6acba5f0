"""Costed layers of a search space: typed keys and the (kernel × width × w-bits × a-bits) grids."""

from __future__ import annotations

from dataclasses import dataclass

from dnas.space.choices import check_increasing, check_kernels
from dnas.space.errors import SpaceError

ROLES: tuple[str, ...] = ("stem", "expand", "dw", "project", "last", "classifier")
BLOCK_ROLES: tuple[str, ...] = ("expand", "dw", "project")
FIXED_ROLES: tuple[str, ...] = ("stem", "last", "classifier")


@dataclass(frozen=True, order=True)
class LayerKey:
    """The typed, hashable key of one costed layer slot of a space (FBNet's LUT keys, not strings).

    Attributes:
        role: ``"stem" | "expand" | "dw" | "project" | "last" | "classifier"``.
        block: global block index for block layers, -1 for the fixed layers.
    """

    role: str
    block: int = -1

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise SpaceError("role", f"unknown layer role {self.role!r}; allowed: {list(ROLES)}")
        if isinstance(self.block, bool) or not isinstance(self.block, int):
            raise SpaceError("block", f"must be an integer, got {self.block!r}")
        if self.role in BLOCK_ROLES and self.block < 0:
            raise SpaceError("block", f"a {self.role} layer needs a block index >= 0")
        if self.role in FIXED_ROLES and self.block != -1:
            raise SpaceError("block", f"the {self.role} layer is not in a block: block must be -1")

    def __str__(self) -> str:
        return self.role if self.block < 0 else f"{self.role}[{self.block}]"


@dataclass(frozen=True)
class CostedLayer:
    """One costed layer of a space and the grid of its choices.

    The grid has four axes, in this order: kernel, width, weight bits, activation bits; the cost
    table stores one latency and energy per grid point. The width axis is the block's hidden width:
    the expand conv's output channels, the depthwise conv's channels, the project conv's input
    channels. Fixed layers (stem, last, classifier) have a single width: their output channels.

    Attributes:
        key: which layer slot.
        kernels: depthwise kernel choices (without ``"skip"``); ``(k,)`` for other layers (1 for
            pointwise convs and the classifier, the stem's kernel for the stem).
        widths: the width axis.
        w_bits: weight bit-width choices.
        a_bits: input-activation bit-width choices.
        in_channels: input channels at the largest width.
        out_channels: output channels at the largest width.
        stride: the layer's stride.
        output_h: output feature-map height (= width), ``ceil(input / stride)``.
        im2col: whether the cost model unrolls the input (the network's first layer).
    """

    key: LayerKey
    kernels: tuple[int, ...]
    widths: tuple[int, ...]
    w_bits: tuple[int, ...]
    a_bits: tuple[int, ...]
    in_channels: int
    out_channels: int
    stride: int
    output_h: int
    im2col: bool = False

    def __post_init__(self) -> None:
        where = str(self.key)
        check_kernels(self.kernels, f"{where}.kernels")
        check_increasing(self.widths, f"{where}.widths")
        check_increasing(self.w_bits, f"{where}.w_bits")
        check_increasing(self.a_bits, f"{where}.a_bits")
        if self.key.role != "dw" and len(self.kernels) != 1:
            raise SpaceError(f"{where}.kernels", "only a depthwise conv has kernel choices")

    @property
    def depthwise(self) -> bool:
        return self.key.role == "dw"

    def grid_shape(self) -> tuple[int, int, int, int]:
        """``(len(kernels), len(widths), len(w_bits), len(a_bits))``."""
        return (len(self.kernels), len(self.widths), len(self.w_bits), len(self.a_bits))

    @property
    def num_entries(self) -> int:
        """Number of grid points."""
        k, w, wb, ab = self.grid_shape()
        return k * w * wb * ab
