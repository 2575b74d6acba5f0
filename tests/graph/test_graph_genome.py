"""Genomes of a converted network: APQ's evolution and random search over its choices."""

from __future__ import annotations

import random

import pytest
import torch

from dnas.cost.graph import GraphCostTable
from dnas.errors import DnasError
from dnas.evolve.search import evolve, random_search
from dnas.graph.derive import graph_metrics
from dnas.graph.genome import GraphGenomeSpace
from dnas.graph.search import GraphTargets
from dnas.graph.supernet import searchable
from dnas.networks import resnet20


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
    graph = supernet.graph
    return graph, GraphGenomeSpace(graph), graph_metrics(graph, GraphCostTable(graph))


def test_draws_mutations_and_crossovers_are_choices_of_the_graph(resnet):
    graph, genomes, _ = resnet
    rng = random.Random(0)
    states = [genomes.random(rng) for _ in range(20)]
    for s in states:
        graph.validate_choice(genomes.choice(s))
        assert genomes.from_indices(genomes.indices(s)).choice(graph) == genomes.choice(s)
    assert len({genomes.key(s) for s in states}) == 20
    child = genomes.mutate(states[0], rng, prob=1.0)
    graph.validate_choice(genomes.choice(child))
    mixed = genomes.crossover(states[0], states[1], rng)
    for g in genomes.groups:
        assert mixed.widths[g.name] in (states[0].widths[g.name], states[1].widths[g.name])
    assert genomes.key(genomes.mutate(states[0], rng, prob=0.0)) == genomes.key(states[0])
    with pytest.raises(DnasError, match="not a genome"):
        genomes.from_indices([0, 1])


def test_encoding_is_one_hot_with_skipped_layers_zero(resnet):
    graph, genomes, _ = resnet
    state = genomes.random(random.Random(1))
    state.skipped = {graph.skips[0].name}
    v = genomes.encode([state])[0]
    assert v.shape == (genomes.num_features,)
    removed = graph.skip(graph.skips[0].name).layers
    per_layer = {n.name: len(n.kernels) + len(n.w_bits) + len(n.a_bits) for n in graph.layers}
    expected = len(genomes.groups) + 3 * len(graph.layers) + len(graph.skips)
    assert int(v.sum()) == expected - 3 * len(removed)
    assert sum(per_layer[n] for n in removed) > 0


@pytest.mark.parametrize("method", ["evolve", "random"])
def test_apq_search_over_a_network_stays_within_budget_and_improves(resnet, method):
    """With fitness = BitOps (wanting the dearest network that fits), the search's best is
    within the budget and no worse than its first generation's."""
    graph, genomes, cost = resnet
    hi = cost(graph.largest_choice())
    targets = GraphTargets(latency_ms=0.8 * hi["latency_ms"])

    def cost_fn(state):
        return cost(genomes.choice(state))

    def fitness(states):
        return [cost_fn(s)["bitops"] / hi["bitops"] for s in states]

    if method == "evolve":
        result = evolve(
            genomes,
            cost_fn,
            targets,
            fitness,
            random.Random(0),
            generations=4,
            population=20,
            parents=5,
            mutations=10,
            crossovers=10,
        )
    else:
        result = random_search(genomes, cost_fn, targets, fitness, random.Random(0), samples=40)
    best = result.ranked[0]
    assert best.cost["latency_ms"] <= targets.latency_ms
    assert best.fitness == max(c.fitness for c in result.ranked)
    if method == "evolve":
        assert result.history[-1]["best_fitness"] >= result.history[0]["best_fitness"]
