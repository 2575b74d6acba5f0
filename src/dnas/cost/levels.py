"""Bit levels whose cost differs on BitFusion, and search spaces restricted to them.

A Fusion Unit runs ``⌊pmax/max(b, pmin)⌋`` operands of ``b`` bits at once (Sharma et al. 2018), so
on BitFusion (pmax 8, pmin 2) bits 5–8 compute alike, 3–4 run twice as many operands per unit and
2 four times; within a class, fewer bits only shrink memory traffic. The expected latency of a
fractional bit index (FracBits) is therefore nearly flat from 8 down to 5 and falls steeply at 4:
a search over every integer gives the budget term no reason to leave 8 until a bit-width has
crossed a plateau where nothing is gained. Searching only the *levels* — the highest bit-width of
each compute class, and for energy, whose memory traffic shrinks with every bit, every even
bit-width too — makes every step between neighbouring choices one the hardware pays for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import torch

from dnas.errors import DnasError
from dnas.space import SearchSpace
from dnas.space.choices import BitChoices


def compute_levels(bits: Iterable[int], pmax_bits: int, pmin_bits: int) -> list[int]:
    """The highest bit-width of each BitFusion compute class among ``bits``, ascending.

    A Fusion Unit runs ``⌊pmax/max(b, pmin)⌋`` operands of ``b`` bits at once, so bit-widths of one
    class compute alike and differ only in memory traffic; 2..8 on BitFusion gives 2, 4 and 8.
    """
    best: dict[int, int] = {}
    for b in sorted(set(bits)):
        best[pmax_bits // max(b, pmin_bits)] = b
    return sorted(best.values())


def levels_of(bits: Iterable[int], pmax_bits: int, pmin_bits: int, metrics: Iterable[str]):
    """The levels among ``bits`` worth searching for targets on ``metrics``: every compute level,
    and with an energy target every even bit-width too."""
    bits = sorted(set(bits))
    levels = set(compute_levels(bits, pmax_bits, pmin_bits))
    if "energy_mj" in set(metrics):
        levels.update(b for b in bits if b % 2 == 0)
    return sorted(levels)


def default_levels(
    space: SearchSpace, pmax_bits: int, pmin_bits: int, metrics: Iterable[str]
) -> list[int]:
    """The bit levels every block offers for both weights and activations, as ``levels_of``
    (the uniform baseline's candidates)."""
    offered = set.intersection(*(set(b.bits.w_bits) & set(b.bits.a_bits) for b in space.blocks))
    return levels_of(offered, pmax_bits, pmin_bits, metrics)


def _restrict(choices: BitChoices, pmax: int, pmin: int, metrics) -> BitChoices:
    return BitChoices(
        tuple(levels_of(choices.w_bits, pmax, pmin, metrics)),
        tuple(levels_of(choices.a_bits, pmax, pmin, metrics)),
    )


def restrict_to_levels(
    space: SearchSpace, pmax_bits: int, pmin_bits: int, metrics: Iterable[str]
) -> SearchSpace:
    """``space`` with every bit choice (of every stage, and of stem, last conv and classifier
    where they search bits) cut to its levels (``levels_of``); widths and kernels unchanged."""
    metrics = list(metrics)

    def cut(choices: BitChoices) -> BitChoices:
        return _restrict(choices, pmax_bits, pmin_bits, metrics)

    return dataclasses.replace(
        space,
        stem=dataclasses.replace(space.stem, bits=cut(space.stem.bits)),
        stages=tuple(dataclasses.replace(s, bits=cut(s.bits)) for s in space.stages),
        last=dataclasses.replace(space.last, bits=cut(space.last.bits)),
        classifier=dataclasses.replace(space.classifier, bits=cut(space.classifier.bits)),
    )


def restrict_table(table, full: SearchSpace, sub: SearchSpace):
    """The entries of ``table`` (of space ``full``) on the grid of ``sub``, a space with the same
    layers and fewer bit choices (``restrict_to_levels``): the same costs, to the last digit.

    Raises:
        DnasError: ``sub`` offers a choice ``full`` does not, or its layers differ.
    """
    from dnas.cost.table import CostTable, LayerTable

    table.check_space(full)
    full_layers = {c.key: c for c in full.costed_layers()}
    entries: dict = {}
    for cl in sub.costed_layers():
        big = full_layers.get(cl.key)
        if big is None or big.kernels != cl.kernels or big.widths != cl.widths:
            raise DnasError(f"layer {cl.key} of space {sub.name!r} is not one of {full.name!r}")
        missing = (set(cl.w_bits) - set(big.w_bits)) | (set(cl.a_bits) - set(big.a_bits))
        if missing:
            raise DnasError(f"layer {cl.key}: bits {sorted(missing)} are not choices of the table")
        t = table.entries[cl.key]
        wi = torch.tensor([t.w_bits.index(b) for b in cl.w_bits])
        ai = torch.tensor([t.a_bits.index(b) for b in cl.a_bits])

        def pick(x: torch.Tensor, wi=wi, ai=ai) -> torch.Tensor:
            return x.index_select(2, wi).index_select(3, ai).contiguous()

        entries[cl.key] = LayerTable(
            t.kernels,
            t.widths,
            tuple(cl.w_bits),
            tuple(cl.a_bits),
            pick(t.latency_ms),
            pick(t.energy_mj),
        )
    header = dataclasses.replace(
        table.header,
        space_fingerprint=sub.fingerprint(),
        extra={**table.header.extra, "restricted_from": table.header.content_hash},
    )
    out = CostTable(header, entries)
    out.header.content_hash = out.compute_hash()
    return out


def search_levels(
    spec, space: SearchSpace, pmax_bits: int, pmin_bits: int, metrics: Iterable[str]
) -> SearchSpace:
    """The space a search runs on for ``search.bit_levels=spec``.

    Args:
        spec: ``"all"`` (every bit choice of the space), ``"hardware"`` (the levels whose cost
            differs for the targets' metrics, ``restrict_to_levels``).
        metrics: the metrics any target constrains (none: ``"hardware"`` keeps the compute
            levels).

    Raises:
        DnasError: an unknown ``spec``.
    """
    if spec == "all":
        return space
    if spec == "hardware":
        return restrict_to_levels(space, pmax_bits, pmin_bits, metrics)
    raise DnasError(f"search.bit_levels={spec!r} is not one of {list(BIT_LEVELS)}")


BIT_LEVELS = ("all", "hardware")


def describe_levels(full: SearchSpace, sub: SearchSpace) -> str | None:
    """One line naming the bit choices a restricted search keeps (None when nothing is cut)."""
    if full.fingerprint() == sub.fingerprint():
        return None
    kept = sorted({b for s in sub.stages for b in (*s.bits.w_bits, *s.bits.a_bits)})
    return (
        f"bits searched at the levels whose cost differs on the hardware: {kept} "
        "(search.bit_levels=all searches every bit-width)"
    )
