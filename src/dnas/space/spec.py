"""Specs of the macro-architecture: stem, stages of inverted-residual blocks, last conv, classifier.

Stage specs are what a config writes; block specs are what a stage expands to once its input
channels and feature-map size are known (MobileNetV2, Sandler et al. 2018).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dnas.space.choices import (
    BIT_KEYS,
    DEFAULT_EXPAND_RATIOS,
    DEFAULT_FIXED_BITS,
    DEFAULT_KERNELS,
    DEFAULT_WIDTH_STEP,
    SKIP,
    BitChoices,
    KernelChoice,
    check_bool,
    check_expand_ratios,
    check_int,
    check_kernels,
    check_widths,
    ratio_widths,
)
from dnas.space.errors import SpaceError

FIXED_BITS = BitChoices(DEFAULT_FIXED_BITS, DEFAULT_FIXED_BITS)


def check_keys(
    d: Any, allowed: tuple[str, ...], field: str, required: tuple[str, ...] = ()
) -> None:
    """Refuse a non-mapping, unknown keys (listing the allowed ones) and missing required keys."""
    if not isinstance(d, Mapping):
        raise SpaceError(field, f"must be a mapping, got {d!r}")
    unknown = sorted(str(k) for k in d if k not in allowed)
    if unknown:
        raise SpaceError(field, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    missing = [k for k in required if k not in d]
    if missing:
        raise SpaceError(field, f"missing required key(s) {missing}")


@dataclass(frozen=True)
class StemSpec:
    """The stem: a dense ``kernel×kernel`` conv, stride ``stride``, ``in_channels → channels``.

    It is the network's first layer, so the cost model prices it with im2col.
    """

    channels: int
    kernel: int = 3
    stride: int = 2
    bits: BitChoices = FIXED_BITS

    KEYS = ("channels", "kernel", "stride", *BIT_KEYS)

    def __post_init__(self) -> None:
        check_int(self.channels, "channels")
        check_int(self.stride, "stride")
        check_kernels([self.kernel], "kernel")
        if not isinstance(self.bits, BitChoices):
            raise SpaceError("bits", f"must be BitChoices, got {self.bits!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StemSpec:
        check_keys(d, cls.KEYS, "", required=("channels",))
        return cls(
            channels=d["channels"],
            kernel=d.get("kernel", 3),
            stride=d.get("stride", 2),
            bits=BitChoices.from_mapping(d, FIXED_BITS),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "kernel": self.kernel,
            "stride": self.stride,
            **self.bits.to_dict(),
        }


@dataclass(frozen=True)
class LastSpec:
    """The last 1×1 conv before pooling: ``channels`` outputs."""

    channels: int
    bits: BitChoices = FIXED_BITS

    KEYS = ("channels", *BIT_KEYS)

    def __post_init__(self) -> None:
        check_int(self.channels, "channels")
        if not isinstance(self.bits, BitChoices):
            raise SpaceError("bits", f"must be BitChoices, got {self.bits!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LastSpec:
        check_keys(d, cls.KEYS, "", required=("channels",))
        return cls(channels=d["channels"], bits=BitChoices.from_mapping(d, FIXED_BITS))

    def to_dict(self) -> dict[str, Any]:
        return {"channels": self.channels, **self.bits.to_dict()}


@dataclass(frozen=True)
class ClassifierSpec:
    """The fully-connected classifier after global pooling (its size comes from the space)."""

    bits: BitChoices = FIXED_BITS

    KEYS = BIT_KEYS

    def __post_init__(self) -> None:
        if not isinstance(self.bits, BitChoices):
            raise SpaceError("bits", f"must be BitChoices, got {self.bits!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClassifierSpec:
        check_keys(d, cls.KEYS, "")
        return cls(bits=BitChoices.from_mapping(d, FIXED_BITS))

    def to_dict(self) -> dict[str, Any]:
        return self.bits.to_dict()


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block with every choice list resolved.

    1×1 expand (``in_channels → width``; absent when ``expand`` is false) → ``k×k`` depthwise
    (stride ``stride``) → 1×1 project (``width → out_channels``); identity residual when
    ``stride == 1`` and ``in_channels == out_channels``.

    Attributes:
        index: global block index in network order (0-based).
        stage: index of the stage the block belongs to.
        index_in_stage: position within its stage (0 is the stage's first, strided, block).
        in_channels: block input channels.
        out_channels: block output channels.
        stride: stride of the depthwise conv.
        input_size: height (= width) of the block's input feature map, which is also the
            depthwise conv's input.
        expand: whether the block has an expand conv (false: hidden width = in_channels).
        kernels: depthwise kernel sizes, ascending (``"skip"`` is not among them).
        can_skip: whether ``"skip"`` is a choice (identity-residual blocks only).
        widths: hidden channel choices, strictly increasing.
        bits: bit-width choices shared by the block's three convs (each conv picks its own).
    """

    index: int
    stage: int
    index_in_stage: int
    in_channels: int
    out_channels: int
    stride: int
    input_size: int
    expand: bool
    kernels: tuple[int, ...]
    can_skip: bool
    widths: tuple[int, ...]
    bits: BitChoices = field(default_factory=BitChoices)

    def __post_init__(self) -> None:
        where = f"blocks[{self.index}]"
        for name in ("in_channels", "out_channels", "stride", "input_size"):
            check_int(getattr(self, name), f"{where}.{name}")
        object.__setattr__(self, "kernels", check_kernels(self.kernels, f"{where}.kernels"))
        object.__setattr__(self, "widths", check_widths(self.widths, f"{where}.widths"))
        if self.can_skip and not self.has_residual:
            raise SpaceError(
                f"{where}.can_skip",
                f"block {self.index} has no identity residual (stride {self.stride}, "
                f"{self.in_channels}→{self.out_channels} channels) and cannot be skipped",
            )
        if not self.expand and self.widths != (self.in_channels,):
            raise SpaceError(
                f"{where}.widths",
                f"a block without expand conv has hidden width = its {self.in_channels} input "
                f"channels, so widths must be [{self.in_channels}], got {list(self.widths)}",
            )
        if self.kernels[-1] > self.input_size:
            raise SpaceError(
                f"{where}.kernels",
                f"{self.kernels[-1]} is larger than the {self.input_size}×{self.input_size} "
                f"input of block {self.index}'s depthwise conv",
            )

    @property
    def output_size(self) -> int:
        """Output feature-map height (= width) with 'same' padding: ``ceil(input / stride)``."""
        return math.ceil(self.input_size / self.stride)

    @property
    def has_residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def kernel_choices(self) -> tuple[KernelChoice, ...]:
        """The kernel choices, with ``"skip"`` last where the block may be removed."""
        return (*self.kernels, SKIP) if self.can_skip else self.kernels

    @property
    def searchable(self) -> bool:
        """Whether any of the block's choices has more than one option."""
        return (
            len(self.kernel_choices) > 1
            or len(self.widths) > 1
            or len(self.bits.w_bits) > 1
            or len(self.bits.a_bits) > 1
        )

    @property
    def convs(self) -> tuple[str, ...]:
        """Roles of the block's convs in order: ``expand`` (if any), ``dw``, ``project``."""
        return ("expand", "dw", "project") if self.expand else ("dw", "project")


@dataclass(frozen=True)
class StageSpec:
    """A stage: ``n`` inverted-residual blocks with ``channels`` outputs, the first strided.

    Every block of the stage offers the same kernels and bits. Its hidden widths are ``widths`` if
    given, else the multiples of ``width_step`` from ``expand_ratios[0]`` to ``expand_ratios[1]``
    times the block's input channels (so the stage's first block, whose input is narrower, gets
    narrower widths).

    Attributes:
        channels: output channels of every block.
        n: number of blocks.
        stride: stride of the first block (the others have stride 1).
        expand: whether blocks have an expand conv (MobileNetV2's first block has none).
        kernels: depthwise kernel choices (sorted ascending).
        skip_from: blocks with index ``>= skip_from`` within the stage may be skipped (so the
            stage depth ranges over ``skip_from..n``); ``None``: no skipping.
        widths: explicit hidden-width choices for every block, or ``None`` (use the ratios).
        expand_ratios: ``(min, max)`` hidden width as a multiple of the block input channels.
        width_step: hidden widths are multiples of this.
        bits: bit choices of each conv of the stage's blocks.
    """

    channels: int
    n: int
    stride: int = 1
    expand: bool = True
    kernels: tuple[int, ...] = DEFAULT_KERNELS
    skip_from: int | None = None
    widths: tuple[int, ...] | None = None
    expand_ratios: tuple[float, float] = DEFAULT_EXPAND_RATIOS
    width_step: int = DEFAULT_WIDTH_STEP
    bits: BitChoices = field(default_factory=BitChoices)

    KEYS = (
        "channels",
        "n",
        "stride",
        "expand",
        "kernels",
        "skip_from",
        "widths",
        "expand_ratios",
        "width_step",
        *BIT_KEYS,
    )
    # Keys a space config may set once for all its stages.
    INHERITED = ("kernels", "expand_ratios", "width_step", *BIT_KEYS)

    def __post_init__(self) -> None:
        check_int(self.channels, "channels")
        check_int(self.n, "n")
        check_int(self.stride, "stride")
        check_bool(self.expand, "expand")
        object.__setattr__(self, "kernels", check_kernels(self.kernels, "kernels"))
        if self.skip_from is not None:
            check_int(self.skip_from, "skip_from", minimum=0)
            if self.skip_from >= self.n:
                raise SpaceError(
                    "skip_from",
                    f"{self.skip_from} leaves no block of the {self.n}-block stage skippable "
                    "(blocks are numbered from 0); use null for no skipping",
                )
        if self.widths is not None:
            object.__setattr__(self, "widths", check_widths(self.widths, "widths"))
        object.__setattr__(
            self, "expand_ratios", check_expand_ratios(self.expand_ratios, "expand_ratios")
        )
        check_int(self.width_step, "width_step")
        if not isinstance(self.bits, BitChoices):
            raise SpaceError("bits", f"must be BitChoices, got {self.bits!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], defaults: Mapping[str, Any]) -> StageSpec:
        """A stage from its config mapping; ``defaults`` holds space-level ``INHERITED`` keys."""
        check_keys(d, cls.KEYS, "", required=("channels", "n"))
        if "widths" in d and "expand_ratios" in d:
            raise SpaceError(
                "widths", "give either widths (explicit channels) or expand_ratios, not both"
            )
        if "widths" in d and "width_step" in d:
            raise SpaceError("width_step", "only applies to expand_ratios, not explicit widths")
        default_bits = defaults.get("bits", BitChoices())
        return cls(
            channels=d["channels"],
            n=d["n"],
            stride=d.get("stride", 1),
            expand=d.get("expand", True),
            kernels=d.get("kernels", defaults.get("kernels", DEFAULT_KERNELS)),
            skip_from=d.get("skip_from"),
            widths=d.get("widths"),
            expand_ratios=d.get(
                "expand_ratios", defaults.get("expand_ratios", DEFAULT_EXPAND_RATIOS)
            ),
            width_step=d.get("width_step", defaults.get("width_step", DEFAULT_WIDTH_STEP)),
            bits=BitChoices.from_mapping(d, default_bits),
        )

    def to_dict(self) -> dict[str, Any]:
        """The canonical config mapping: every field explicit, nothing inherited."""
        d: dict[str, Any] = {
            "channels": self.channels,
            "n": self.n,
            "stride": self.stride,
            "expand": self.expand,
            "kernels": list(self.kernels),
            "skip_from": self.skip_from,
        }
        if self.widths is not None:
            d["widths"] = list(self.widths)
        else:
            d["expand_ratios"] = list(self.expand_ratios)
            d["width_step"] = self.width_step
        d.update(self.bits.to_dict())
        return d

    def block_widths(self, in_channels: int) -> tuple[int, ...]:
        """Hidden-width choices of a block of this stage with ``in_channels`` inputs."""
        if self.widths is not None:
            return self.widths
        if not self.expand:
            return (in_channels,)
        widths = ratio_widths(in_channels, self.expand_ratios, self.width_step)
        if not widths:
            lo, hi = self.expand_ratios
            raise SpaceError(
                "expand_ratios",
                f"no multiple of {self.width_step} lies between {lo}× and {hi}× the "
                f"{in_channels} input channels",
            )
        return widths

    def build_blocks(
        self, stage: int, first_index: int, in_channels: int, input_size: int
    ) -> tuple[BlockSpec, ...]:
        """The stage's blocks, given the stage input; errors name this stage's fields."""
        blocks = []
        c_in, size = in_channels, input_size
        for i in range(self.n):
            stride = self.stride if i == 0 else 1
            index = first_index + i
            widths = self.block_widths(c_in)
            if not self.expand and widths != (c_in,):
                raise SpaceError(
                    "widths",
                    f"block {index} has no expand conv (expand: false), so its hidden width is "
                    f"its {c_in} input channels: widths must be [{c_in}], got {list(widths)}",
                )
            if self.kernels[-1] > size:
                raise SpaceError(
                    "kernels",
                    f"{self.kernels[-1]} is larger than the {size}×{size} input of block "
                    f"{index}'s depthwise conv",
                )
            residual = stride == 1 and c_in == self.channels
            can_skip = self.skip_from is not None and i >= self.skip_from
            if can_skip and not residual:
                raise SpaceError(
                    "skip_from",
                    f"block {i} of the stage (block {index}) has no identity residual "
                    f"(stride {stride}, {c_in}→{self.channels} channels) and cannot be skipped; "
                    "only blocks with stride 1 and equal in/out channels may be",
                )
            block = BlockSpec(
                index=index,
                stage=stage,
                index_in_stage=i,
                in_channels=c_in,
                out_channels=self.channels,
                stride=stride,
                input_size=size,
                expand=self.expand,
                kernels=self.kernels,
                can_skip=can_skip,
                widths=widths,
                bits=self.bits,
            )
            blocks.append(block)
            c_in, size = self.channels, block.output_size
        return tuple(blocks)
