"""SearchSpace: the macro-architecture and its choices as validated data, and their cost grids."""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from dnas.space.architecture import Architecture, BlockChoice, ConvBits
from dnas.space.choices import (
    DEFAULT_MAX_BITS,
    SKIP,
    BitChoices,
    KernelChoice,
    check_expand_ratios,
    check_int,
    check_kernels,
)
from dnas.space.errors import SpaceError
from dnas.space.layers import CostedLayer, LayerKey
from dnas.space.spec import (
    BlockSpec,
    ClassifierSpec,
    LastSpec,
    StageSpec,
    StemSpec,
    check_keys,
)

FINGERPRINT_VERSION = 1

# Picks one index of an ordered axis of length n.
_Pick = Callable[[int], int]


@dataclass(frozen=True)
class SearchSpace:
    """A MobileNetV2-style search space: stem → stages of inverted-residual blocks → last → FC.

    Per block the choices are the depthwise kernel (or ``"skip"`` where allowed), the hidden width,
    and the weight/activation bits of each conv; stem, last conv and classifier choose bits only.
    ``blocks`` is derived from the stages at construction, which validates every cross-field
    constraint and raises ``SpaceError`` naming the config field.

    Attributes:
        name: the space's name (not part of its fingerprint).
        resolution: input height (= width).
        in_channels: input channels.
        num_classes: classifier outputs.
        stem: the stem conv.
        stages: the stages of blocks.
        last: the last 1×1 conv.
        classifier: the classifier's bits.
        max_bits: highest bit-width any choice may have (see also ``validate_bits``).
        blocks: every block, in network order (derived).
    """

    name: str
    resolution: int
    in_channels: int
    num_classes: int
    stem: StemSpec
    stages: tuple[StageSpec, ...]
    last: LastSpec
    classifier: ClassifierSpec = field(default_factory=ClassifierSpec)
    max_bits: int = DEFAULT_MAX_BITS
    blocks: tuple[BlockSpec, ...] = field(init=False, repr=False, compare=False)

    KEYS = (
        "name",
        "resolution",
        "in_channels",
        "num_classes",
        "max_bits",
        "stem",
        "stages",
        "last",
        "classifier",
        *StageSpec.INHERITED,
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpaceError("name", f"must be a non-empty string, got {self.name!r}")
        for name in ("resolution", "in_channels", "num_classes", "max_bits"):
            check_int(getattr(self, name), name)
        for name, cls in (("stem", StemSpec), ("last", LastSpec), ("classifier", ClassifierSpec)):
            if not isinstance(getattr(self, name), cls):
                raise SpaceError(name, f"must be a {cls.__name__}, got {getattr(self, name)!r}")
        object.__setattr__(self, "stages", tuple(self.stages))
        if not self.stages:
            raise SpaceError("stages", "must not be empty")
        if self.stem.kernel > self.resolution:
            raise SpaceError(
                "stem.kernel",
                f"{self.stem.kernel} is larger than the {self.resolution}×{self.resolution} input",
            )
        blocks: list[BlockSpec] = []
        channels = self.stem.channels
        size = math.ceil(self.resolution / self.stem.stride)
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, StageSpec):
                raise SpaceError(f"stages[{i}]", f"must be a StageSpec, got {stage!r}")
            try:
                stage_blocks = stage.build_blocks(i, len(blocks), channels, size)
            except SpaceError as e:
                raise e.within(f"stages[{i}]") from None
            blocks.extend(stage_blocks)
            channels, size = stage.channels, stage_blocks[-1].output_size
        object.__setattr__(self, "blocks", tuple(blocks))
        self.validate_bits(self.max_bits)

    # ------------------------------------------------------------------------------ config I/O
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchSpace:
        """A space from a config mapping (a YAML file's content, or an OmegaConf container).

        Space-level ``kernels``, ``expand_ratios``, ``width_step`` and ``bits``/``w_bits``/
        ``a_bits`` apply to every stage that does not set its own.

        Raises:
            SpaceError: naming the offending field, e.g. ``stages[1].kernels``.
        """
        check_keys(
            d,
            cls.KEYS,
            "space",
            required=("name", "resolution", "in_channels", "num_classes", "stem", "stages", "last"),
        )
        max_bits = d.get("max_bits", DEFAULT_MAX_BITS)
        check_int(max_bits, "max_bits")
        defaults: dict[str, Any] = {}
        if "kernels" in d:
            defaults["kernels"] = check_kernels(d["kernels"], "kernels")
        if "expand_ratios" in d:
            defaults["expand_ratios"] = check_expand_ratios(d["expand_ratios"], "expand_ratios")
        if "width_step" in d:
            defaults["width_step"] = check_int(d["width_step"], "width_step")
        defaults["bits"] = BitChoices.from_mapping(d, BitChoices())
        if any(k in d for k in ("bits", "w_bits", "a_bits")):
            defaults["bits"].check_max(max_bits)

        parts: dict[str, Any] = {}
        for name, spec in (("stem", StemSpec), ("last", LastSpec), ("classifier", ClassifierSpec)):
            try:
                parts[name] = spec.from_dict(d.get(name, {}))
            except SpaceError as e:
                raise e.within(name) from None
        raw_stages = d["stages"]
        if isinstance(raw_stages, (str, Mapping)) or not isinstance(raw_stages, Sequence):
            raise SpaceError("stages", f"must be a list of stage mappings, got {raw_stages!r}")
        stages = []
        for i, s in enumerate(raw_stages):
            try:
                stages.append(StageSpec.from_dict(s, defaults))
            except SpaceError as e:
                raise e.within(f"stages[{i}]") from None
        return cls(
            name=d["name"],
            resolution=d["resolution"],
            in_channels=d["in_channels"],
            num_classes=d["num_classes"],
            stages=tuple(stages),
            max_bits=max_bits,
            **parts,
        )

    def to_dict(self) -> dict[str, Any]:
        """The canonical config mapping (every stage explicit); ``from_dict`` inverts it."""
        return {
            "name": self.name,
            "resolution": self.resolution,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "max_bits": self.max_bits,
            "stem": self.stem.to_dict(),
            "stages": [s.to_dict() for s in self.stages],
            "last": self.last.to_dict(),
            "classifier": self.classifier.to_dict(),
        }

    def structure(self) -> dict[str, Any]:
        """The resolved space as plain data: every block with its channels, sizes and choices.

        This is what ``fingerprint`` hashes, so two configs that spell the same space differently
        (explicit widths vs. ratios, space-level vs. stage-level bits) share a fingerprint.
        """
        return {
            "fingerprint_version": FINGERPRINT_VERSION,
            "resolution": self.resolution,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "stem": self.stem.to_dict(),
            "blocks": [
                {
                    "in_channels": b.in_channels,
                    "out_channels": b.out_channels,
                    "stride": b.stride,
                    "input_size": b.input_size,
                    "expand": b.expand,
                    "kernels": list(b.kernels),
                    "can_skip": b.can_skip,
                    "widths": list(b.widths),
                    **b.bits.to_dict(),
                }
                for b in self.blocks
            ],
            "last": self.last.to_dict(),
            "classifier": self.classifier.to_dict(),
        }

    def fingerprint(self) -> str:
        """A short sha256 (16 hex digits) of ``structure()``: what a cost table was built for.

        The name and ``max_bits`` are excluded: they change no layer and no choice.
        """
        text = json.dumps(self.structure(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def validate_bits(self, pmax_bits: int) -> None:
        """Raise a SpaceError naming the field if any bit choice exceeds ``pmax_bits``.

        Call with the hardware's highest precision, e.g. ``space.validate_bits(hw.pmax_bits)``.
        """
        check_int(pmax_bits, "pmax_bits")
        groups: list[tuple[str, BitChoices]] = [("stem", self.stem.bits)]
        groups += [(f"stages[{i}]", s.bits) for i, s in enumerate(self.stages)]
        groups += [("last", self.last.bits), ("classifier", self.classifier.bits)]
        for where, bits in groups:
            try:
                bits.check_max(pmax_bits)
            except SpaceError as e:
                raise e.within(where) from None

    # ------------------------------------------------------------------------------- structure
    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def searchable_blocks(self) -> tuple[BlockSpec, ...]:
        """Blocks with at least one choice of more than one option."""
        return tuple(b for b in self.blocks if b.searchable)

    @property
    def stem_output_size(self) -> int:
        return math.ceil(self.resolution / self.stem.stride)

    @property
    def final_size(self) -> int:
        """Feature-map height (= width) after the last block, the last conv's input and output."""
        return self.blocks[-1].output_size

    @property
    def last_in_channels(self) -> int:
        return self.blocks[-1].out_channels

    def kernel_choices(self, block: int) -> tuple[KernelChoice, ...]:
        """Kernel choices of block ``block``, ``"skip"`` last where the block may be removed."""
        return self.blocks[block].kernel_choices

    # ---------------------------------------------------------------------------- costed layers
    def costed_layers(self) -> tuple[CostedLayer, ...]:
        """Every costed layer slot in network order, with its grid of choices.

        Order: stem, then per block expand (if any), dw, project, then last, classifier. Output
        sizes use 'same' padding: ``ceil(input / stride)``.
        """
        return self._costed_layers

    @cached_property
    def _costed_layers(self) -> tuple[CostedLayer, ...]:
        # Built once: the space is immutable, and the exact-cost and derive paths ask often.
        stem = self.stem
        layers = [
            CostedLayer(
                key=LayerKey("stem"),
                kernels=(stem.kernel,),
                widths=(stem.channels,),
                w_bits=stem.bits.w_bits,
                a_bits=stem.bits.a_bits,
                in_channels=self.in_channels,
                out_channels=stem.channels,
                stride=stem.stride,
                output_h=self.stem_output_size,
                im2col=True,
            )
        ]
        for b in self.blocks:
            hidden = b.widths[-1]
            common = {"widths": b.widths, "w_bits": b.bits.w_bits, "a_bits": b.bits.a_bits}
            if b.expand:
                layers.append(
                    CostedLayer(
                        key=LayerKey("expand", b.index),
                        kernels=(1,),
                        in_channels=b.in_channels,
                        out_channels=hidden,
                        stride=1,
                        output_h=b.input_size,
                        **common,
                    )
                )
            layers.append(
                CostedLayer(
                    key=LayerKey("dw", b.index),
                    kernels=b.kernels,
                    in_channels=hidden,
                    out_channels=hidden,
                    stride=b.stride,
                    output_h=b.output_size,
                    **common,
                )
            )
            layers.append(
                CostedLayer(
                    key=LayerKey("project", b.index),
                    kernels=(1,),
                    in_channels=hidden,
                    out_channels=b.out_channels,
                    stride=1,
                    output_h=b.output_size,
                    **common,
                )
            )
        layers.append(
            CostedLayer(
                key=LayerKey("last"),
                kernels=(1,),
                widths=(self.last.channels,),
                w_bits=self.last.bits.w_bits,
                a_bits=self.last.bits.a_bits,
                in_channels=self.last_in_channels,
                out_channels=self.last.channels,
                stride=1,
                output_h=self.final_size,
            )
        )
        layers.append(
            CostedLayer(
                key=LayerKey("classifier"),
                kernels=(1,),
                widths=(self.num_classes,),
                w_bits=self.classifier.bits.w_bits,
                a_bits=self.classifier.bits.a_bits,
                in_channels=self.last.channels,
                out_channels=self.num_classes,
                stride=1,
                output_h=1,
            )
        )
        return tuple(layers)

    @property
    def num_grid_entries(self) -> int:
        """Total grid points over all costed layers (the size of a cost table)."""
        return sum(c.num_entries for c in self.costed_layers())

    def arch_indices(self, arch: Architecture) -> dict[LayerKey, tuple[int, int, int, int]]:
        """The grid index ``(kernel, width, w_bits, a_bits)`` of each costed layer under ``arch``.

        Layers of skipped blocks are absent. The architecture is validated first.
        """
        self.validate_arch(arch)
        out: dict[LayerKey, tuple[int, int, int, int]] = {
            LayerKey("stem"): (0, 0, *self._bit_index(self.stem.bits, arch.stem))
        }
        for b, c in zip(self.blocks, arch.blocks, strict=True):
            if c.skipped:
                continue
            w = b.widths.index(c.width)
            k = b.kernels.index(c.kernel)
            for role in b.convs:
                bits = c.conv_bits(role)
                assert bits is not None  # validate_arch: expand bits exist iff the block expands
                out[LayerKey(role, b.index)] = (
                    k if role == "dw" else 0,
                    w,
                    *self._bit_index(b.bits, bits),
                )
        out[LayerKey("last")] = (0, 0, *self._bit_index(self.last.bits, arch.last))
        out[LayerKey("classifier")] = (
            0,
            0,
            *self._bit_index(self.classifier.bits, arch.classifier),
        )
        return out

    @staticmethod
    def _bit_index(choices: BitChoices, bits: ConvBits) -> tuple[int, int]:
        return choices.w_bits.index(bits.w_bits), choices.a_bits.index(bits.a_bits)

    # ---------------------------------------------------------------------------- architectures
    def validate_arch(self, arch: Architecture) -> None:
        """Raise a SpaceError naming the first choice of ``arch`` that this space does not offer."""
        if not isinstance(arch, Architecture):
            raise SpaceError("arch", f"must be an Architecture, got {type(arch).__name__}")
        if arch.num_blocks != self.num_blocks:
            raise SpaceError(
                "arch.blocks",
                f"has {arch.num_blocks} blocks; space {self.name!r} has {self.num_blocks}",
            )
        self._check_bits("arch.stem", self.stem.bits, arch.stem)
        for b, c in zip(self.blocks, arch.blocks, strict=True):
            where = f"arch.blocks[{b.index}]"
            if c.kernel not in b.kernel_choices:
                raise SpaceError(
                    f"{where}.kernel",
                    f"{c.kernel!r} is not a choice of block {b.index} "
                    f"(choices: {list(b.kernel_choices)})",
                )
            if c.width not in b.widths:
                raise SpaceError(
                    f"{where}.width",
                    f"{c.width} is not a choice of block {b.index} (choices: {list(b.widths)})",
                )
            if b.expand != (c.expand is not None):
                raise SpaceError(
                    f"{where}.expand",
                    f"block {b.index} has an expand conv: give its bits"
                    if b.expand
                    else f"block {b.index} has no expand conv: its bits must be null",
                )
            for role in b.convs:
                bits = c.conv_bits(role)
                assert bits is not None
                self._check_bits(f"{where}.{role}", b.bits, bits)
        self._check_bits("arch.last", self.last.bits, arch.last)
        self._check_bits("arch.classifier", self.classifier.bits, arch.classifier)

    @staticmethod
    def _check_bits(where: str, choices: BitChoices, bits: ConvBits) -> None:
        for name in ("w_bits", "a_bits"):
            v, allowed = getattr(bits, name), getattr(choices, name)
            if v not in allowed:
                raise SpaceError(
                    f"{where}.{name}", f"{v} is not a choice (choices: {list(allowed)})"
                )

    def _arch(self, kernel: Callable[[BlockSpec], KernelChoice], pick: _Pick) -> Architecture:
        def conv(choices: BitChoices) -> ConvBits:
            return ConvBits(
                choices.w_bits[pick(len(choices.w_bits))], choices.a_bits[pick(len(choices.a_bits))]
            )

        blocks = []
        for b in self.blocks:
            k = kernel(b)
            width = b.widths[pick(len(b.widths))]
            expand = conv(b.bits) if b.expand else None
            blocks.append(BlockChoice(k, width, expand, conv(b.bits), conv(b.bits)))
        return Architecture(
            blocks=tuple(blocks),
            stem=conv(self.stem.bits),
            last=conv(self.last.bits),
            classifier=conv(self.classifier.bits),
            space=self.name,
            space_fingerprint=self.fingerprint(),
        )

    def largest_arch(self) -> Architecture:
        """Largest kernel, width and bits everywhere; no block skipped."""
        return self._arch(lambda b: b.kernels[-1], lambda n: n - 1)

    def smallest_arch(self) -> Architecture:
        """Smallest kernel, width and bits everywhere; every skippable block skipped."""
        return self._arch(lambda b: SKIP if b.can_skip else b.kernels[0], lambda n: 0)

    def random_arch(self, generator: random.Random | int | None = None) -> Architecture:
        """Every choice drawn uniformly and independently (``"skip"`` is one kernel choice).

        Args:
            generator: a ``random.Random``, or a seed for one (``None``: unseeded).
        """
        rng = generator if isinstance(generator, random.Random) else random.Random(generator)
        return self._arch(lambda b: rng.choice(b.kernel_choices), rng.randrange)
