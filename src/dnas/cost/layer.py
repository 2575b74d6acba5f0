"""One costed layer: its shape and precisions, as a typed, hashable, validated key."""

from __future__ import annotations

from dataclasses import dataclass, fields

from dnas.cost.hardware import BitFusionConfig
from dnas.space import Architecture, CostedLayer, LayerKey, SearchSpace

MAX_FIELD = 1 << 20
"""The largest channel count, kernel, stride, output size or batch a layer may have."""
MAX_COUNT = 1 << 44
"""The largest MAC count and input-activation count of a layer (1.8e13): the model's counters
(bits moved, cycles) then stay below 2^53 and are exact in int64 and float64 alike."""


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
            if v > MAX_FIELD:
                raise ValueError(
                    f"{f.name}={v} is larger than this cost model computes exactly "
                    f"(at most {MAX_FIELD})"
                )
        if self.groups != 1:
            if not (self.groups == self.in_channels == self.out_channels):
                raise ValueError(
                    f"groups={self.groups} with in_channels={self.in_channels}, "
                    f"out_channels={self.out_channels}: only groups=1 (dense) and "
                    "groups=in_channels=out_channels (depthwise) are modelled"
                )
            if self.im2col:
                raise ValueError("im2col is only modelled for dense layers (groups=1)")
        inputs = self.batch * self.in_channels * self.input_h**2
        if self.macs > MAX_COUNT or inputs > MAX_COUNT:
            raise ValueError(
                f"a layer of {self.macs} MACs and {inputs} input values is larger than this cost "
                f"model computes exactly (at most {MAX_COUNT} of each)"
            )

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


def layer_shape(layer: CostedLayer, k: int, w: int, wb: int, ab: int, batch: int = 1) -> LayerShape:
    """A costed layer of a search space at one grid point, as the cost model sees it.

    Args:
        layer: the layer (``SearchSpace.costed_layers()``).
        k, w, wb, ab: indices into its ``kernels``, ``widths``, ``w_bits`` and ``a_bits``.
        batch: images per inference.

    Raises:
        IndexError: an index outside its axis.
    """
    for name, i, axis in (
        ("k", k, layer.kernels),
        ("w", w, layer.widths),
        ("wb", wb, layer.w_bits),
        ("ab", ab, layer.a_bits),
    ):
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(axis):
            raise IndexError(f"{layer.key}: {name}={i!r} is outside 0..{len(axis) - 1}")
    width = layer.widths[w]
    role = layer.key.role
    return LayerShape(
        in_channels=width if role in ("dw", "project") else layer.in_channels,
        out_channels=width if role in ("dw", "expand") else layer.out_channels,
        kernel_size=layer.kernels[k],
        stride=layer.stride,
        output_h=layer.output_h,
        batch=batch,
        w_bits=layer.w_bits[wb],
        a_bits=layer.a_bits[ab],
        groups=width if role == "dw" else 1,
        im2col=layer.im2col,
    )


def arch_layer_shapes(
    space: SearchSpace, arch: Architecture, batch: int = 1
) -> dict[LayerKey, LayerShape]:
    """The shape of every layer ``arch`` runs, as the cost model sees it (in network order)."""
    layers = {c.key: c for c in space.costed_layers()}
    return {
        key: layer_shape(layers[key], *idx, batch=batch)
        for key, idx in space.arch_indices(arch).items()
    }
