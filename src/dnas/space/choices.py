"""Choice lists of the search space (kernels, widths, bits): types, defaults and validation."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

from dnas.errors import DnasError
from dnas.space.errors import SpaceError

SKIP: Literal["skip"] = "skip"
"""The kernel choice that removes a block (identity-residual blocks only)."""

KernelChoice = Union[int, Literal["skip"]]  # noqa: UP007 (a runtime alias must work on Python 3.10)
"""One choice of a block's depthwise kernel: an odd size, or ``"skip"``."""

DEFAULT_KERNELS: tuple[int, ...] = (3, 5, 7)
DEFAULT_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
DEFAULT_FIXED_BITS: tuple[int, ...] = (8,)
DEFAULT_EXPAND_RATIOS: tuple[float, float] = (3.0, 6.0)
DEFAULT_WIDTH_STEP = 8
DEFAULT_MAX_BITS = 8


def nearest_index(value: float, num_choices: int) -> int:
    """The option nearest a continuous index into ``num_choices`` ordered options.

    The one rounding rule of the project (the supernet's argmax and the derivation both use it):
    clamp to ``[0, n − 1]``, then round half *up*, so θ = 2.5 picks option 3 everywhere.
    """
    if num_choices < 1:
        raise DnasError(f"need at least one option, got {num_choices}")
    v = min(max(float(value), 0.0), float(num_choices - 1))
    return min(math.floor(v + 0.5), num_choices - 1)


def check_int(value: Any, field: str, minimum: int = 1) -> int:
    """An integer ``>= minimum`` (bools are refused: YAML ``yes`` is not a channel count)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpaceError(field, f"must be an integer, got {value!r}")
    if value < minimum:
        raise SpaceError(field, f"must be >= {minimum}, got {value}")
    return value


def check_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise SpaceError(field, f"must be true or false, got {value!r}")
    return value


def _as_list(values: Any, field: str) -> list[Any]:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
        raise SpaceError(field, f"must be a list, got {values!r}")
    if len(values) == 0:
        raise SpaceError(field, "must not be empty")
    return list(values)


def check_kernels(values: Any, field: str) -> tuple[int, ...]:
    """Depthwise kernel sizes: odd, positive, distinct; returned sorted ascending.

    The kernel is a categorical choice, so its order carries no meaning; sorting makes ``[7, 3, 5]``
    and ``[3, 5, 7]`` the same space and puts the largest kernel last.
    """
    items = _as_list(values, field)
    out = []
    for v in items:
        if v == SKIP:
            raise SpaceError(
                field,
                "'skip' is not a kernel size; allow skipping a stage's blocks with "
                "skip_from: <index of the first skippable block>",
            )
        k = check_int(v, field)
        if k % 2 == 0:
            raise SpaceError(field, f"{k} is even; depthwise kernels must be odd ('same' padding)")
        out.append(k)
    if len(set(out)) != len(out):
        raise SpaceError(field, f"has duplicates: {out}")
    return tuple(sorted(out))


def check_increasing(values: Any, field: str, minimum: int = 1) -> tuple[int, ...]:
    """An ordered choice list: integers ``>= minimum``, strictly increasing."""
    items = tuple(check_int(v, field, minimum) for v in _as_list(values, field))
    for a, b in itertools.pairwise(items):
        if b <= a:
            raise SpaceError(
                field, f"must be strictly increasing (an ordered choice), got {list(items)}"
            )
    return items


def check_widths(values: Any, field: str) -> tuple[int, ...]:
    """Hidden channel counts: positive, strictly increasing."""
    return check_increasing(values, field, minimum=1)


MIN_BITS = 2


def check_bits(values: Any, field: str, max_bits: int | None = None) -> tuple[int, ...]:
    """Bit-widths: integers in ``[2, max_bits]``, strictly increasing.

    Two bits is the floor: a symmetric (weight or signed activation) quantizer needs a level on each
    side of zero, and BitFusion's lowest native precision is 2.
    """
    bits = check_increasing(values, field, minimum=MIN_BITS)
    if max_bits is not None and bits[-1] > max_bits:
        raise SpaceError(field, f"{bits[-1]} bits exceeds the highest precision {max_bits}")
    return bits


def check_expand_ratios(values: Any, field: str) -> tuple[float, float]:
    """``[lo, hi]``: the range of hidden widths as multiples of the block input channels."""
    items = _as_list(values, field)
    if len(items) != 2:
        raise SpaceError(
            field,
            f"must be [min, max] (two ratios), got {items}; give an explicit list of hidden "
            "channel counts with widths: [...]",
        )
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise SpaceError(field, f"ratios must be positive numbers, got {items}")
    lo, hi = float(items[0]), float(items[1])
    if lo > hi:
        raise SpaceError(field, f"min {lo} is larger than max {hi}")
    return lo, hi


def ratio_widths(in_channels: int, ratios: tuple[float, float], step: int) -> tuple[int, ...]:
    """Multiples of ``step`` from ``ratios[0]`` to ``ratios[1]`` times ``in_channels`` (inclusive).

    Example: ``ratio_widths(16, (3, 6), 8) == (48, 56, 64, 72, 80, 88, 96)``.
    """
    lo = math.ceil(ratios[0] * in_channels / step - 1e-9) * step
    hi = math.floor(ratios[1] * in_channels / step + 1e-9) * step
    return tuple(range(max(lo, step), hi + 1, step))


@dataclass(frozen=True)
class BitChoices:
    """The weight and activation bit-width choices of one conv (or of every conv of a block).

    ``a_bits`` are the bits of the conv's *input* activation.
    """

    w_bits: tuple[int, ...] = DEFAULT_BITS
    a_bits: tuple[int, ...] = DEFAULT_BITS

    def __post_init__(self) -> None:
        object.__setattr__(self, "w_bits", check_bits(self.w_bits, "w_bits"))
        object.__setattr__(self, "a_bits", check_bits(self.a_bits, "a_bits"))

    @property
    def max_bits(self) -> int:
        return max(self.w_bits[-1], self.a_bits[-1])

    def check_max(self, max_bits: int) -> None:
        """Raise a SpaceError naming ``w_bits``/``a_bits`` if a choice exceeds ``max_bits``."""
        check_bits(self.w_bits, "w_bits", max_bits)
        check_bits(self.a_bits, "a_bits", max_bits)

    def to_dict(self) -> dict[str, list[int]]:
        return {"w_bits": list(self.w_bits), "a_bits": list(self.a_bits)}

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any], default: BitChoices) -> BitChoices:
        """Read ``bits`` (both), ``w_bits`` and ``a_bits`` keys of a config mapping.

        ``w_bits``/``a_bits`` win over ``bits``, which wins over ``default``.
        """
        both = d.get("bits")
        w = d.get("w_bits", both if both is not None else default.w_bits)
        a = d.get("a_bits", both if both is not None else default.a_bits)
        if both is not None:
            check_bits(both, "bits")
        return cls(check_bits(w, "w_bits"), check_bits(a, "a_bits"))


BIT_KEYS: tuple[str, ...] = ("bits", "w_bits", "a_bits")
