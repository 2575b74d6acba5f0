"""One costed layer: its shape and precisions, as a typed, hashable, validated key."""

from __future__ import annotations

from dataclasses import dataclass, fields

from dnas.cost.hardware import BitFusionConfig


@dataclass(frozen=True, order=True)
class LayerShape:
    """A convolution (or fully-connected layer) as the BitFusion model sees it.

    A fully-connected layer is ``kernel_size=1, output_h=1, stride=1``. A depthwise convolution has
    ``groups == in_channels == out_channels``; other groupings are not modelled. ``im2col`` marks the
    network's first layer, whose input the front end unrolls.
    """

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    output_h: int
    batch: int
    w_bits: int
    a_bits: int
    groups: int = 1
    im2col: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "im2col":
                if not isinstance(v, bool):
                    raise ValueError(f"im2col must be a bool, got {v!r}")
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{f.name} must be an integer, got {v!r}")
            if v <= 0:
                raise ValueError(f"{f.name} must be a positive integer, got {v}")
        if self.groups != 1:
            if not (self.groups == self.in_channels == self.out_channels):
                raise ValueError(
                    f"groups={self.groups} with in_channels={self.in_channels}, "
                    f"out_channels={self.out_channels}: only groups=1 (dense) and "
                    "groups=in_channels=out_channels (depthwise) are modelled"
                )
            if self.im2col:
                raise ValueError("im2col is only modelled for dense layers (groups=1)")

    @property
    def depthwise(self) -> bool:
        return self.groups != 1

    @property
    def input_h(self) -> int:
        """Input height (= width); padding is not modelled."""
        return (self.output_h - 1) * self.stride + self.kernel_size

    @property
    def macs(self) -> int:
        k2 = self.kernel_size**2
        o2 = self.output_h**2
        if self.depthwise:
            return self.batch * o2 * k2 * self.out_channels
        return self.batch * o2 * k2 * self.in_channels * self.out_channels

    def check_bits(self, hw: BitFusionConfig) -> None:
        for name in ("w_bits", "a_bits"):
            v = getattr(self, name)
            if v > hw.pmax_bits:
                raise ValueError(
                    f"{name}={v} exceeds the hardware's highest precision pmax_bits={hw.pmax_bits}"
                )
