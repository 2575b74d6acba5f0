"""The network a practitioner builds without any search: one bit-width everywhere, the widest that fits.

Every mixed-precision paper (HAQ, APQ, EdMIPS, FracBits) reports this row beside its search, so
``dnas`` must beat it. A *uniform* candidate is, for a bit level ``b``, a depthwise kernel ``k`` and
a depth:

- every searchable conv (each block's expand, depthwise and project conv) at ``b`` bits for both
  weights and input activations; stem, last conv and classifier at the space's fixed bits (the
  highest of their choices where they are searchable);
- every block's depthwise kernel ``k``;
- ``full`` depth (no block skipped), or ``short``: the last block of every stage that may skip
  one skipped (the same network one block shorter per stage);
- every block's hidden width at the same relative position ``r`` of its width choices (index
  ``floor(r·(n−1))`` of its ``n`` widths), ``r`` as large as still fits the budget by exact table
  cost.

The positions where some block's width changes are few (the sum of the blocks' width counts), so
the widest fitting one is found by trying them all from the widest down: exact, and a fraction of
a second. Which candidate is "the" baseline is decided by training them (``dnas-uniform``), on the
validation split.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dnas.cost.exact import ExactCost
from dnas.cost.levels import compute_levels, default_levels  # noqa: F401 (re-exported)
from dnas.cost.targets import Targets
from dnas.errors import DnasError
from dnas.space import SKIP, Architecture, ArchState, LayerKey, SearchSpace
from dnas.space.layers import BLOCK_ROLES, FIXED_ROLES

DEPTHS = ("full", "short")


class UniformError(DnasError):
    """A uniform-baseline request that cannot be met (unknown depth, a bit level no conv offers, ...)."""


@dataclass(frozen=True)
class UniformCandidate:
    """One uniform network at its widest fitting width.

    Attributes:
        bits: the bit level of every searchable conv (weights and activations).
        kernel: every block's depthwise kernel.
        depth: ``full`` or ``short``.
        position: the relative width position ``r`` in [0, 1].
        state: the network as grid indices.
        cost: its exact ``latency_ms`` and ``energy_mj``.
    """

    bits: int
    kernel: int
    depth: str
    position: float
    state: ArchState
    cost: dict[str, float]

    @property
    def name(self) -> str:
        """A short unique name: ``b8_k3_full``."""
        return f"b{self.bits}_k{self.kernel}_{self.depth}"

    def arch(self, space: SearchSpace) -> Architecture:
        return self.state.to_arch(space)


def width_index(position: float, num_widths: int) -> int:
    """The width index at relative position ``position`` of ``num_widths`` ordered widths."""
    if not 0.0 <= position <= 1.0:
        raise UniformError(f"a width position must be in [0, 1], got {position}")
    return min(math.floor(position * (num_widths - 1) + 1e-9), num_widths - 1)


def width_positions(space: SearchSpace) -> list[float]:
    """Every relative position at which some block's width index changes, ascending (0 first)."""
    found = {0.0, 1.0}
    for b in space.blocks:
        n = len(b.widths)
        if n > 1:
            found.update(i / (n - 1) for i in range(1, n))
    return sorted(found)


def uniform_state(
    space: SearchSpace, bits: int, kernel: int, depth: str, position: float
) -> ArchState:
    """The uniform network (see the module docstring) as grid indices.

    Raises:
        UniformError: ``depth`` unknown, or ``kernel`` / ``bits`` not a choice of some block.
    """
    if depth not in DEPTHS:
        raise UniformError(f"depth must be one of {list(DEPTHS)}, got {depth!r}")
    layers = {c.key: c for c in space.costed_layers()}
    skipped = _short_skips(space) if depth == "short" else set()
    kernels, widths, bit_idx = {}, {}, {}
    for b in space.blocks:
        choices = space.kernel_choices(b.index)
        if kernel not in choices:
            raise UniformError(
                f"kernel {kernel} is not a choice of block {b.index} (choices: {list(choices)})"
            )
        kernels[b.index] = choices.index(SKIP if b.index in skipped else kernel)
        widths[b.index] = width_index(position, len(b.widths))
        for role in BLOCK_ROLES:
            key = LayerKey(role, b.index)
            if key not in layers:
                continue
            cl = layers[key]
            if bits not in cl.w_bits or bits not in cl.a_bits:
                raise UniformError(
                    f"{bits} bits is not a choice of block {b.index}'s {role} conv "
                    f"(w_bits {list(cl.w_bits)}, a_bits {list(cl.a_bits)})"
                )
            bit_idx[key] = (cl.w_bits.index(bits), cl.a_bits.index(bits))
    for role in FIXED_ROLES:
        cl = layers[LayerKey(role)]
        bit_idx[cl.key] = (len(cl.w_bits) - 1, len(cl.a_bits) - 1)
    return ArchState(kernels, widths, bit_idx)


def _short_skips(space: SearchSpace) -> set[int]:
    """The blocks ``short`` removes: the last block of every stage that may skip one."""
    last: dict[int, int] = {}
    for b in space.blocks:
        last[b.stage] = b.index
    return {i for i in last.values() if space.blocks[i].can_skip}


def widest_uniform(
    space: SearchSpace,
    costs: ExactCost,
    targets: Targets,
    bits: int,
    kernel: int,
    depth: str,
    positions: Sequence[float] | None = None,
) -> UniformCandidate | None:
    """The uniform network of ``bits``, ``kernel``, ``depth`` at the widest position that fits
    ``targets`` by exact cost, or ``None`` if even the narrowest does not."""
    for r in reversed(positions if positions is not None else width_positions(space)):
        state = uniform_state(space, bits, kernel, depth, r)
        cost = costs.total(state)
        if targets.fits(cost):
            return UniformCandidate(bits, kernel, depth, r, state, cost)
    return None


def uniform_candidates(
    space: SearchSpace,
    costs: ExactCost,
    targets: Targets,
    levels: Iterable[int],
    kernels: Iterable[int] = (3, 5),
    depths: Iterable[str] = DEPTHS,
) -> tuple[list[UniformCandidate], list[str]]:
    """Every uniform candidate that fits ``targets``, each at its widest fitting width.

    Returns:
        ``(candidates, unfit)``: the candidates (by bits, kernel, depth), and the names of those
        whose narrowest network is over budget. A ``short`` candidate is left out in a space
        without skippable blocks (it would equal ``full``).
    """
    depths = list(depths)
    for d in depths:
        if d not in DEPTHS:
            raise UniformError(f"uniform.depths: {d!r} is not a depth (choices: {list(DEPTHS)})")
    if "short" in depths and not _short_skips(space):
        depths.remove("short")
    positions = width_positions(space)
    found, unfit = [], []
    for b in sorted(set(levels)):
        for k in sorted(set(kernels)):
            for d in depths:
                c = widest_uniform(space, costs, targets, b, k, d, positions)
                if c is None:
                    unfit.append(f"b{b}_k{k}_{d}")
                else:
                    found.append(c)
    return found, unfit


def prune_dominated(candidates: Sequence[UniformCandidate]) -> tuple[list, list]:
    """Split ``candidates`` into those worth training and those another one dominates.

    ``b`` dominates ``a`` when they share the kernel and ``b`` has at least ``a``'s bits, width
    position and depth (``full`` over ``short``): ``b`` is ``a`` with more of everything a
    practitioner expects accuracy to grow with, and it fits the same budget.

    Returns:
        ``(kept, dropped)``, each in the input's order; ``dropped`` as ``(candidate, by)`` pairs.
    """
    rank = {d: i for i, d in enumerate(reversed(DEPTHS))}  # short 0 < full 1

    def dominates(b: UniformCandidate, a: UniformCandidate) -> bool:
        return (
            b is not a
            and b.kernel == a.kernel
            and b.bits >= a.bits
            and b.position >= a.position
            and rank[b.depth] >= rank[a.depth]
        )

    kept, dropped = [], []
    for a in candidates:
        by = next((b for b in candidates if dominates(b, a)), None)
        if by is None:
            kept.append(a)
        else:
            dropped.append((a, by))
    return kept, dropped
