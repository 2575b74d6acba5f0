"""Exact table costs of discrete architectures, and the cheapest and dearest network of a space.

The one implementation of each: ``CostTable.arch_cost`` and ``CostTable.extremes``, the budget
derivation, ``dnas-evolve`` and the joint-budget check (``dnas.cost.targets``) all come here, so they
agree to the bit.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dnas.cost.table import METRICS, CostTable
from dnas.space import SKIP, ArchState, LayerKey, SearchSpace
from dnas.space.layers import BLOCK_ROLES, FIXED_ROLES


class ExactCost:
    """Exact ``latency_ms`` and ``energy_mj`` of ArchStates: the sum of their layers' table entries.

    Layers are summed in network order (``space.costed_layers()``); the layers of a skipped block
    cost nothing. Build one per (space, table) and call ``total`` as often as needed: it is the fast
    path that the budget derivation and the evolutionary search call many thousands of times.

    Args:
        space: the search space.
        table: its cost table (float64 entries).
    """

    def __init__(self, space: SearchSpace, table: CostTable) -> None:
        choices = {b.index: space.kernel_choices(b.index) for b in space.blocks}
        self.n_kernels: dict[int, int] = {i: len(c) for i, c in choices.items()}
        self.skip_index: dict[int, int | None] = {
            i: len(c) - 1 if SKIP in c else None for i, c in choices.items()
        }
        # Per costed layer: key, block (-1: fixed layer), whether the kernel index applies (only
        # the depthwise conv has a kernel axis longer than one), and item() of each metric's
        # [K, W, WB, AB] array (a bounds-checked scalar read, several times faster than indexing).
        self._layers = tuple(
            (
                cl.key,
                cl.key.block,
                cl.key.role == "dw",
                table.entries[cl.key].latency_ms.numpy().item,
                table.entries[cl.key].energy_mj.numpy().item,
            )
            for cl in space.costed_layers()
        )

    def skipped(self, state: ArchState, block: int) -> bool:
        """Whether ``state`` removes block ``block`` (its kernel index is ``skip``)."""
        return state.kernel[block] == self.skip_index[block]

    def total(self, state: ArchState) -> dict[str, float]:
        """``{"latency_ms": ..., "energy_mj": ...}`` of ``state``, exact table sums."""
        lat = en = 0.0
        kernel, width, bits, skip = state.kernel, state.width, state.bits, self.skip_index
        for key, block, has_kernel, lat_at, en_at in self._layers:
            wi, ai = bits[key]
            if block < 0:
                k = w = 0
            elif kernel[block] == skip[block]:
                continue
            else:
                k = kernel[block] if has_kernel else 0
                w = width[block]
            lat += lat_at(k, w, wi, ai)
            en += en_at(k, w, wi, ai)
        return {"latency_ms": lat, "energy_mj": en}


def cheapest_state(space: SearchSpace, table: CostTable, weights: Mapping[str, float]) -> ArchState:
    """The exactly cheapest architecture for the weighted cost Σ_m weights[m]·cost_m.

    Costs add up over layers; a block's convs interact only through its kernel and width, and the
    bits of each conv are independent given those. So per block: for every (kernel, width) the
    cheapest bits of each conv, summed over the block's convs, then the cheapest (kernel, width);
    the block is skipped where it may be and every real choice costs more than nothing (a skipped
    block keeps the width and bits found). Ties go to the lowest index (kernel, then width; w_bits,
    then a_bits). Negative weights give the dearest architecture (``dearest_state``).

    Args:
        space: the search space.
        table: its cost table.
        weights: metric (``latency_ms``, ``energy_mj``) -> weight.
    """
    if not weights or set(weights) - set(METRICS):
        raise ValueError(f"weights must name cost metrics of {list(METRICS)}, got {dict(weights)}")
    layers = {cl.key for cl in space.costed_layers()}
    scalar = {key: _weighted(table, key, weights) for key in layers}  # [K, W, WB, AB]
    kernel: dict[int, int] = {}
    width: dict[int, int] = {}
    bits: dict[LayerKey, tuple[int, int]] = {}
    for role in FIXED_ROLES:
        key = LayerKey(role)
        g = scalar[key][0, 0]
        bits[key] = divmod(int(g.argmin()), g.shape[1])
    for b in space.blocks:
        keys = [LayerKey(r, b.index) for r in BLOCK_ROLES if LayerKey(r, b.index) in layers]
        # Per conv and (kernel, width): the cheapest bits (flat index over [WB, AB]) and cost.
        flat = {key: scalar[key].reshape(*scalar[key].shape[:2], -1) for key in keys}
        best_bits = {key: f.argmin(axis=2) for key, f in flat.items()}
        total = sum(f.min(axis=2) for f in flat.values())  # [K, W]: pointwise convs broadcast
        k, wi = divmod(int(total.argmin()), total.shape[1])
        choices = space.kernel_choices(b.index)
        kernel[b.index] = len(choices) - 1 if SKIP in choices and float(total.min()) > 0 else k
        width[b.index] = wi
        for key in keys:
            kk = k if key.role == "dw" else 0
            bits[key] = divmod(int(best_bits[key][kk, wi]), scalar[key].shape[3])
    return ArchState(kernel, width, bits)


def dearest_state(space: SearchSpace, table: CostTable, metric: str) -> ArchState:
    """The architecture of the highest ``metric``: the cheapest for the negated cost (never one
    that skips a block, as costs are non-negative)."""
    return cheapest_state(space, table, {metric: -1.0})


def _weighted(table: CostTable, key: LayerKey, weights: Mapping[str, float]) -> np.ndarray:
    """Σ_m weights[m]·entries_m of one layer, in METRICS order, float64 ``[K, W, WB, AB]``."""
    terms = [getattr(table.entries[key], m).numpy() * weights[m] for m in METRICS if m in weights]
    return sum(terms[1:], terms[0])
