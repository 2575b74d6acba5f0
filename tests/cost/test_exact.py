"""One exact-cost and one cheapest-network implementation: ExactCost, cheapest_state, extremes."""

from __future__ import annotations

import random

import pytest
import torch

from dnas.cost.exact import ExactCost, cheapest_state, dearest_state
from dnas.cost.table import METRICS, CostTable
from dnas.space import ArchState, SearchSpace, builtin_space_names, load_space
from tests.cost.fake_table import constant_table, random_table


@pytest.fixture(scope="module", params=builtin_space_names())
def space_table(request) -> tuple[SearchSpace, CostTable]:
    """Every built-in space with a random table (their BitFusion tables take minutes to build)."""
    space = load_space(request.param)
    return space, random_table(space, seed=len(request.param))


def _by_block_reduction(space: SearchSpace, table: CostTable, metric: str, lowest: bool) -> float:
    """The extreme by reducing values (not by choosing indices): fixed layers at their extreme;
    per block the extreme over (kernel, width) of the sum over its convs of their extreme over
    bits, or nothing where the block may be skipped and the lowest is asked for."""
    red = torch.amin if lowest else torch.amax
    total = 0.0
    blocks: dict[int, list[torch.Tensor]] = {}
    for cl in space.costed_layers():
        v = getattr(table.entries[cl.key], metric)
        if cl.key.block < 0:
            total += float(red(v))
        else:
            blocks.setdefault(cl.key.block, []).append(red(red(v, dim=3), dim=2))
    for block, parts in blocks.items():
        skip = lowest and "skip" in space.kernel_choices(block)
        total += 0.0 if skip else float(red(sum(parts)))
    return total


def _check_extremes(space: SearchSpace, table: CostTable) -> None:
    ext = table.extremes(space)
    assert list(ext) == ["min_latency_ms", "max_latency_ms", "min_energy_mj", "max_energy_mj"]
    for i, metric in enumerate(METRICS):
        cheapest = cheapest_state(space, table, {metric: 1.0}).to_arch(space)
        dearest = dearest_state(space, table, metric).to_arch(space)
        # the extremes are the exact costs of those architectures, to the bit
        assert ext[f"min_{metric}"] == table.arch_cost(space, cheapest)[i]
        assert ext[f"max_{metric}"] == table.arch_cost(space, dearest)[i]
        # and agree with the reduction by values (summed in another order)
        assert ext[f"min_{metric}"] == pytest.approx(
            _by_block_reduction(space, table, metric, lowest=True), rel=1e-12
        )
        assert ext[f"max_{metric}"] == pytest.approx(
            _by_block_reduction(space, table, metric, lowest=False), rel=1e-12
        )
        assert ext[f"min_{metric}"] < ext[f"max_{metric}"]


def test_extremes_are_the_costs_of_the_cheapest_and_dearest_networks(space, table):
    _check_extremes(space, table)


def test_extremes_on_every_builtin_space(space_table):
    _check_extremes(*space_table)


def test_no_architecture_outside_the_extremes(space_table):
    space, table = space_table
    ext = table.extremes(space)
    rng = random.Random(0)
    for _ in range(50):
        lat, en = table.arch_cost(space, space.random_arch(rng))
        assert ext["min_latency_ms"] <= lat <= ext["max_latency_ms"]
        assert ext["min_energy_mj"] <= en <= ext["max_energy_mj"]


def _sum_in_network_order(space: SearchSpace, table: CostTable, state: ArchState) -> list[float]:
    """Σ of the architecture's entries, layer by layer as ``space.arch_indices`` lists them."""
    out = [0.0, 0.0]
    for key, idx in space.arch_indices(state.to_arch(space)).items():
        for i, metric in enumerate(METRICS):
            out[i] += float(getattr(table.entries[key], metric)[idx])
    return out


def test_total_is_the_table_sum_to_the_bit(space_table):
    space, table = space_table
    costs = ExactCost(space, table)
    rng = random.Random(1)
    skipped = 0
    for _ in range(40):
        state = ArchState.from_arch(space, space.random_arch(rng))
        skipped += any(costs.skipped(state, b.index) for b in space.blocks)
        got = costs.total(state)
        assert [got[m] for m in METRICS] == _sum_in_network_order(space, table, state)
    has_skip = any("skip" in space.kernel_choices(b.index) for b in space.blocks)
    assert skipped > 0 or not has_skip  # skipped blocks were among the draws


def test_a_skipped_block_costs_nothing(space, table):
    costs = ExactCost(space, table)
    block = next(b.index for b in space.blocks if "skip" in space.kernel_choices(b.index))
    state = ArchState.from_arch(space, space.largest_arch())
    kept = costs.total(state)
    state.kernel[block] = costs.skip_index[block]
    removed = {m: 0.0 for m in METRICS}
    for cl in space.costed_layers():
        if cl.key.block == block:
            idx = space.arch_indices(space.largest_arch())[cl.key]
            for m in METRICS:
                removed[m] += float(getattr(table.entries[cl.key], m)[idx])
    got = costs.total(state)
    for m in METRICS:
        assert removed[m] > 0
        assert got[m] == pytest.approx(kept[m] - removed[m], rel=1e-12)


def test_ties_go_to_the_lowest_index_and_skip_only_saves():
    space = load_space("fmnist_mbv2")
    for value, skips in ((0.5, True), (0.0, False)):
        state = cheapest_state(space, constant_table(space, value), {"latency_ms": 1.0})
        for b in space.blocks:
            can_skip = "skip" in space.kernel_choices(b.index)
            skip_index = len(space.kernel_choices(b.index)) - 1
            # a block that costs something is skipped where it may be; at cost 0 nothing is saved
            assert state.kernel[b.index] == (skip_index if skips and can_skip else 0)
            assert state.width[b.index] == 0
        assert set(state.bits.values()) == {(0, 0)}
        assert any("skip" in space.kernel_choices(b.index) for b in space.blocks)


def test_dearest_never_skips(space, table):
    costs = ExactCost(space, table)
    for metric in METRICS:
        state = dearest_state(space, table, metric)
        assert not any(costs.skipped(state, b.index) for b in space.blocks)


def test_weights_must_name_metrics(space, table):
    with pytest.raises(ValueError, match="cost metrics"):
        cheapest_state(space, table, {"latency_s": 1.0})
    with pytest.raises(ValueError, match="cost metrics"):
        cheapest_state(space, table, {})
