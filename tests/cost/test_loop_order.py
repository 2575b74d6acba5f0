"""Loop-order tie-breaking.

The rule (the reference simulator's, docs/BITFUSION.md step 10): of the schedules with the fewest
cycles and then the least energy, the one whose loop order the simulator tries first wins, i.e. the
lowest index in ``reference_loop_orders`` (CPython 2's set order of the permutations, not
itertools' order). The oracle applies it over all orders; the fast backends evaluate one order per
``order_classes`` class, ranked as the class's first member, and must report the same order.
"""

from __future__ import annotations

import random
from itertools import permutations

import pytest

import dnas_kernels
from dnas.cost import oracle
from dnas.cost.backend import evaluate
from dnas.cost.hardware import BitFusionConfig
from dnas.cost.layer import LayerShape
from dnas.cost.loop_order import (
    DENSE_LOOPS,
    DEPTHWISE_LOOPS,
    LOOP_INDEXES,
    order_classes,
    reference_loop_orders,
)

HW = BitFusionConfig()


def test_reference_order_is_the_simulators_not_itertools():
    dense, dw = reference_loop_orders(DENSE_LOOPS), reference_loop_orders(DEPTHWISE_LOOPS)
    assert sorted(dense) == sorted(permutations(DENSE_LOOPS)) and len(set(dense)) == 120
    assert sorted(dw) == sorted(permutations(DEPTHWISE_LOOPS)) and len(set(dw)) == 24
    assert dense[:3] == (
        ("OC/oc", "IC/ic", "B/b", "OH/oh", "OW/ow"),
        ("B/b", "OC/oc", "OW/ow", "IC/ic", "OH/oh"),
        ("OH/oh", "B/b", "OW/ow", "OC/oc", "IC/ic"),
    )
    assert dw[:3] == (
        ("C/c", "B/b", "OW/ow", "OH/oh"),
        ("C/c", "OW/ow", "B/b", "OH/oh"),
        ("B/b", "OH/oh", "OW/ow", "C/c"),
    )


def _order_costs(layer: LayerShape) -> list[tuple[int, float, int]]:
    """(cycles, energy, reference index) of every loop order under the oracle's chosen tiling."""
    best = oracle.layer_cost(layer, HW).best_tiling
    kind = oracle._depthwise_candidates if layer.depthwise else oracle._dense_candidates
    for tiling, _, schedules in kind(layer, HW):
        if tiling == best:
            return [(cycles, energy, oi) for cycles, energy, oi, _ in schedules]
    raise AssertionError("the oracle's tiling is not among its candidates")


# (layer, orders tied at the best cycles and energy, the order reported)
TIES = [
    (LayerShape(16, 1024, 1, 1, 28, 16, 8, 2), 20, "OC/oc>IC/ic>OH/oh>B/b>OW/ow"),
    (LayerShape(1024, 256, 1, 1, 7, 4, 2, 2), 10, "OC/oc>IC/ic>OH/oh>B/b>OW/ow"),
    # only OW and OH swapped: the simulator meets OH outside OW first
    (LayerShape(96, 96, 3, 1, 7, 2, 8, 8, groups=96), 2, "B/b>C/c>OH/oh>OW/ow"),
]


@pytest.mark.parametrize(("layer", "n_tied", "reported"), TIES, ids=["pw", "pw_w2a2", "dw"])
def test_tied_orders_go_to_the_one_the_reference_tries_first(layer, n_tied, reported):
    loops = DEPTHWISE_LOOPS if layer.depthwise else DENSE_LOOPS
    ref = reference_loop_orders(loops)
    costs = _order_costs(layer)
    assert len(costs) == len(ref)
    fewest = min((cycles, energy) for cycles, energy, _ in costs)
    tied = sorted(oi for cycles, energy, oi in costs if (cycles, energy) == fewest)
    assert len(tied) == n_tied
    got = oracle.layer_cost(layer, HW)
    assert got.best_loop_order == ref[tied[0]]
    assert got.loop_order_str == reported
    # the rule decides: neither the first order tried overall nor itertools' first tied order
    assert tied[0] > 0
    itertools_rank = {order: i for i, order in enumerate(permutations(loops))}
    assert got.best_loop_order != min((ref[i] for i in tied), key=itertools_rank.__getitem__)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_fast_backends_break_ties_alike(backend):
    if backend == "triton" and not dnas_kernels.available():
        pytest.skip("triton cannot run here")
    layers = [layer for layer, _, _ in TIES]
    res = evaluate(layers, HW, backend=backend)
    assert [">".join(res.loop_order(i)) for i in range(len(layers))] == [r for _, _, r in TIES]


def _walks(order: tuple[str, ...], tilings: list, loops: tuple[str, ...]) -> list:
    return [oracle._walk(order, n, fp, LOOP_INDEXES[loops], caps) for n, fp, caps in tilings]


def _tilings(loops: tuple[str, ...], single_tile: int, seed: int, count: int = 40) -> list:
    """Random tile counts (one tile where ``single_tile`` says, OW = OH), footprints and caps."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        n = {
            name: 1 if (single_tile >> i) & 1 else rng.randint(2, 9) for i, name in enumerate(loops)
        }
        n["OH/oh"] = n["OW/ow"]
        footprint = {d: rng.randint(1, 64) for d in ("wgt", "act", "out")}
        caps = {d: rng.choice([64, 256, 2048, 10**9]) for d in ("wgt", "act", "out")}
        out.append((n, footprint, caps))
    return out


@pytest.mark.parametrize("loops", [DENSE_LOOPS, DEPTHWISE_LOOPS], ids=["dense", "dw"])
def test_each_order_is_stood_for_by_a_class_of_lower_or_equal_rank(loops):
    """Whatever order ties, a class representative that walks (so costs) exactly alike and ranks
    no later is evaluated, so ranking the classes as their first member reports the same order."""
    ref = reference_loop_orders(loops)
    ow_oh = (1 << loops.index("OW/ow")) | (1 << loops.index("OH/oh"))
    for single_tile in range(1 << len(loops)):
        if (single_tile & ow_oh) not in (0, ow_oh):
            continue  # OW and OH always have the same number of tiles
        classes = order_classes(loops, single_tile)
        ranks = [rank for _, rank in classes]
        assert ranks == sorted(set(ranks)) and ranks[0] == 0
        assert all(ref[rank] == order for order, rank in classes)
        tilings = _tilings(loops, single_tile, seed=single_tile)
        walks = {rank: _walks(order, tilings, loops) for order, rank in classes}
        for i, order in enumerate(ref):
            alike = [rank for rank, w in walks.items() if w == _walks(order, tilings, loops)]
            assert alike and min(alike) <= i, (single_tile, order)
    assert len(order_classes(DENSE_LOOPS)) == 60 and len(order_classes(DEPTHWISE_LOOPS)) == 12
