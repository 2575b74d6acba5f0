"""The graph cost table (BitFusion latency/energy over a layer graph) and the budgeted derivation."""

from __future__ import annotations

import random

import pytest
import torch

from dnas.cost.graph import GraphCostTable, graph_cost
from dnas.cost.targets import BudgetError
from dnas.graph.derive import argmax_choice, derive_graph, graph_metrics
from dnas.graph.expected import expected_bitops
from dnas.graph.supernet import searchable
from dnas.networks import resnet20
from tests.graph.test_convert import TinyNet
from tests.graph.test_graph_supernet import one_hot_relaxed, random_choice


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    supernet = searchable(
        resnet20(in_channels=1),
        torch.randn(2, 1, 16, 16),
        w_bits=(2, 4, 8),
        a_bits=(2, 4, 8),
        skips=True,
    )
    return supernet, GraphCostTable(supernet.graph)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    supernet = searchable(TinyNet(), torch.randn(2, 3, 16, 16), kernels={3: (3, 5)})
    return supernet, GraphCostTable(supernet.graph)


@pytest.mark.parametrize("net", ["resnet", "tiny"])
def test_the_table_prices_a_choice_as_graph_cost_does(net, request):
    supernet, table = request.getfixturevalue(net)
    graph = supernet.graph
    for seed in range(3):
        choice = random_choice(graph, random.Random(seed))
        _, total = graph_cost(graph, choice)
        exact = table.exact(choice)
        assert exact["latency_ms"] == pytest.approx(total["latency_ms"], rel=1e-12)
        assert exact["energy_mj"] == pytest.approx(total["energy_mj"], rel=1e-12)
        expected = table.expected(one_hot_relaxed(graph, choice))
        for m in table.METRICS:
            assert float(expected[m]) == pytest.approx(exact[m], rel=1e-9), m


def test_expected_latency_is_differentiable_and_moves_the_right_way(resnet):
    supernet, table = resnet
    with torch.no_grad():
        for p in supernet.arch_parameters():
            if p.dim() == 0:
                p.sub_(0.5)  # between the two largest options
    try:
        relaxed = supernet.relaxed()
        latency = table.expected(relaxed)["latency_ms"]
        latency.backward()
        group = next(iter(supernet.widths))
        # a wider group costs more; a keep-probability gradient is the branch's cost
        assert float(group.arch_index.grad) > 0
        gate = supernet.skip_gate(supernet.graph.skips[0].name)
        assert float(gate.arch_logits.grad[0]) > 0 > float(gate.arch_logits.grad[1])
        lo, hi = table.extremes()["latency_ms"]
        assert lo < float(latency.detach()) < hi
    finally:
        supernet.zero_grad()
        with torch.no_grad():
            for p in supernet.arch_parameters():
                if p.dim() == 0:
                    p.add_(0.5)


@pytest.mark.parametrize("metric", ["latency_ms", "energy_mj", "bitops", "size_kib"])
@pytest.mark.parametrize("frac", [0.05, 0.3, 0.7])
def test_the_derived_choice_meets_the_budget_exactly(resnet, metric, frac):
    supernet, table = resnet
    graph = supernet.graph
    cost = graph_metrics(graph, table)
    lo, hi = cost(graph.smallest_choice())[metric], cost(graph.largest_choice())[metric]
    target = lo + frac * (hi - lo)
    choice, c, steps = derive_graph(graph, supernet.relaxed(), cost, {metric: target})
    assert c[metric] <= target and steps > 0
    assert c == cost(choice)  # the cost returned is the choice's own
    # Spending: a tight walk leaves little of the budget (one downgrade too far at most).
    assert c[metric] > lo


def test_a_budget_above_the_most_likely_choice_derives_it(resnet):
    supernet, table = resnet
    graph = supernet.graph
    cost = graph_metrics(graph, table)
    best = argmax_choice(graph, supernet.relaxed())
    assert best == supernet.derive()
    choice, _, steps = derive_graph(
        graph, supernet.relaxed(), cost, {"latency_ms": cost(best)["latency_ms"] * 1.01}
    )
    assert choice == best and steps == 0


def test_two_budgets_together(resnet):
    supernet, table = resnet
    graph = supernet.graph
    cost = graph_metrics(graph, table)
    hi = cost(graph.largest_choice())
    targets = {"latency_ms": 0.6 * hi["latency_ms"], "size_kib": 0.3 * hi["size_kib"]}
    _, c, _ = derive_graph(graph, supernet.relaxed(), cost, targets)
    assert c["latency_ms"] <= targets["latency_ms"] and c["size_kib"] <= targets["size_kib"]


def test_the_derivation_downgrades_what_the_distribution_likes_least(tiny):
    """With every group but one pushed to its smallest width, the derivation takes the
    budget's saving from bits and skips before it takes that group's width."""
    supernet, table = tiny
    graph = supernet.graph
    cost = graph_metrics(graph, table)
    favourite = next(g for g in graph.groups if not g.is_fixed)
    relaxed = one_hot_relaxed(graph, graph.largest_choice())
    for g in graph.groups:
        if not g.is_fixed and g.name != favourite.name:
            relaxed.width_index[g.name] = torch.tensor(0.6)  # nearer the middle than the top
    target = 0.8 * cost(graph.largest_choice())["bitops"]
    choice, c, _ = derive_graph(graph, relaxed, cost, {"bitops": target})
    assert c["bitops"] <= target
    assert choice.widths[favourite.name] == favourite.channels


def test_an_unreachable_budget_and_an_unknown_metric_are_refused(resnet):
    supernet, table = resnet
    graph = supernet.graph
    cost = graph_metrics(graph, table)
    low = cost(graph.smallest_choice())["bitops"]
    with pytest.raises(BudgetError, match="the smallest costs bitops"):
        derive_graph(graph, supernet.relaxed(), cost, {"bitops": low * 0.5})
    with pytest.raises(BudgetError, match="unknown budget metric"):
        derive_graph(graph, supernet.relaxed(), cost, {"flops": 1.0})


def test_expected_bitops_of_a_supernet_matches_at_its_start(resnet):
    """At the start every θ and β is at its largest option: the expected BitOps of the relaxed
    distribution, skips weighted at 1/2, is the largest choice's minus half the skippable
    branches'."""
    supernet, _ = resnet
    graph = supernet.graph
    largest = graph.largest_choice()
    branch = sum(
        graph.bitops(largest) - graph.bitops(graph.choice(skipped=[s.name])) for s in graph.skips
    )
    value = float(expected_bitops(graph, supernet.relaxed()))
    assert value == pytest.approx(graph.bitops(largest) - branch / 2, rel=1e-6)


def test_uniform_baselines_of_resnet20(resnet):
    from dnas.graph.uniform import uniform_candidates, uniform_choice, width_positions

    supernet, table = resnet
    graph = supernet.graph
    cost = graph_metrics(graph, table)
    assert width_positions(graph) == [0.0, 0.5, 1.0]  # widths 0.5, 0.75, 1.0 of each group
    full8 = uniform_choice(graph, 8, 1.0)
    assert full8 == graph.largest_choice()
    hi = cost(full8)["latency_ms"]
    targets = {"latency_ms": 0.8 * hi}
    found, unfit = uniform_candidates(graph, cost, targets)
    assert not unfit and [c.name for c in found] == ["b2", "b4", "b8"]
    for c in found:
        assert c.cost == cost(c.choice) and c.cost["latency_ms"] <= targets["latency_ms"]
        assert {b for b in c.choice.bits.values()} == {(c.bits, c.bits)}
        assert not c.choice.skipped
        # the widest that fits: one position wider is over the budget (or there is none)
        wider = [r for r in width_positions(graph) if r > c.position]
        if wider:
            over = cost(uniform_choice(graph, c.bits, wider[0]))
            assert over["latency_ms"] > targets["latency_ms"]
    b8 = next(c for c in found if c.bits == 8)
    assert b8.position < 1.0  # 8 bits everywhere does not fit at full width
    tight = {"bitops": cost(uniform_choice(graph, 2, 0.0))["bitops"] * 0.99}
    _, unfit = uniform_candidates(graph, cost, tight, levels=[2, 8])
    assert unfit == ["b2", "b8"]


@pytest.mark.parametrize("metric", ["latency_ms", "bitops"])
def test_fill_spends_what_the_repair_leaves_and_stays_within(resnet, metric):
    """A distribution between options: the repair (argmax) stops at the first choice that fits,
    fill then rounds up toward the distribution while the budget holds: never over, never less
    spent, and never above the ceiling of a continuous index."""
    import math

    supernet, table = resnet
    graph = supernet.graph
    cost = graph_metrics(graph, table)
    relaxed = one_hot_relaxed(graph, graph.largest_choice())
    gen = torch.Generator().manual_seed(0)
    for g in relaxed.width_index:
        relaxed.width_index[g] = torch.rand((), generator=gen) * (len(graph.group(g).widths) - 1)
    for name, (_, ba) in relaxed.bit_index.items():
        relaxed.bit_index[name] = (torch.rand((), generator=gen) * 2, ba)
    lo, hi = cost(graph.smallest_choice())[metric], cost(graph.largest_choice())[metric]
    target = {metric: lo + 0.35 * (hi - lo)}
    _, ca, _ = derive_graph(graph, relaxed, cost, target, strategy="argmax")
    f, cf, _ = derive_graph(graph, relaxed, cost, target, strategy="fill")
    assert ca[metric] <= target[metric] and cf[metric] <= target[metric]
    assert cf[metric] > ca[metric]  # it spent more
    for g, x in relaxed.width_index.items():
        widths = graph.group(g).widths
        assert widths.index(f.widths[g]) <= math.ceil(float(x) - 1e-9)
    with pytest.raises(BudgetError, match="derive strategy"):
        derive_graph(graph, relaxed, cost, target, strategy="budget")
