"""Genomes, APQ's predictor and the evolutionary/random searches on exact table costs."""

from __future__ import annotations

import random

import pytest
import torch

from dnas.cost.exact import ExactCost
from dnas.cost.targets import BudgetError, Targets, resolve_targets
from dnas.evolve import AccuracyPredictor, GenomeSpace, draw_within, evolve, random_search
from dnas.evolve.genome import FIXED


@pytest.fixture(scope="module")
def genomes(space):
    return GenomeSpace(space)


def test_random_genomes_are_architectures_of_the_space(genomes, space):
    rng = random.Random(0)
    for _ in range(20):
        space.validate_arch(genomes.random(rng).to_arch(space))


def test_mutation_and_crossover(genomes):
    rng = random.Random(1)
    a, b = genomes.random(rng), genomes.random(rng)
    assert genomes.mutate(a, rng, prob=0.0) == a
    redrawn = [genomes.mutate(a, rng, prob=1.0) for _ in range(5)]
    assert any(r != a for r in redrawn)
    child = genomes.crossover(a, b, rng)

    def gene_of(state, gene):
        head = () if gene == FIXED else (state.kernel[gene], state.width[gene])
        return head + tuple(state.bits[k] for k in genomes.genes[gene])

    for gene in genomes.genes:  # every gene comes whole from one parent
        assert gene_of(child, gene) in (gene_of(a, gene), gene_of(b, gene))
    assert any(gene_of(child, g) != gene_of(a, g) for g in genomes.genes)


def test_encoding_is_one_hot_and_ignores_a_skipped_blocks_choices(genomes, space):
    rng = random.Random(2)
    states = [genomes.random(rng) for _ in range(10)]
    x = genomes.encode(states)
    assert x.shape == (10, genomes.num_features)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    block = next(b for b in space.blocks if genomes.skip_index[b.index] is not None)
    s = states[0].copy()
    s.kernel[block.index] = genomes.skip_index[block.index]
    t = s.copy()
    t.width[block.index] = (s.width[block.index] + 1) % genomes.n_widths[block.index]
    assert torch.equal(genomes.encode([s]), genomes.encode([t]))
    assert genomes.key(s) == genomes.key(t)
    u = states[0].copy()
    u.kernel[block.index] = 0
    v = u.copy()
    v.width[block.index] = (u.width[block.index] + 1) % genomes.n_widths[block.index]
    assert genomes.key(u) != genomes.key(v)
    assert not torch.equal(genomes.encode([u]), genomes.encode([v]))


def test_predictor_learns_an_additive_accuracy(genomes):
    rng = random.Random(3)
    states = [genomes.random(rng) for _ in range(1200)]
    x = genomes.encode(states)
    w = torch.randn(genomes.num_features, generator=torch.Generator().manual_seed(0)) * 0.01
    y = 0.8 + x @ w
    pred = AccuracyPredictor(genomes.num_features)
    rmse = pred.fit(x[:1000], y[:1000], epochs=60)
    held = pred.predict(x[1000:])
    err = float((held - y[1000:]).pow(2).mean().sqrt())
    # far better than predicting the mean (error = std) on architectures it has not seen
    assert rmse < 0.3 * float(y.std()) and err < 0.4 * float(y.std())


def test_kendall_tau_counts_concordant_pairs():
    from itertools import combinations

    from dnas.evolve.predictor import kendall_tau

    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(30, generator=g), torch.randn(30, generator=g)
    pairs = list(combinations(range(30), 2))
    by_hand = sum(1 if (a[i] - a[j]) * (b[i] - b[j]) > 0 else -1 for i, j in pairs) / len(pairs)
    assert kendall_tau(a, b) == pytest.approx(by_hand)
    assert kendall_tau(a, 2 * a + 1) == pytest.approx(1.0)
    assert kendall_tau(a, -a) == pytest.approx(-1.0)


def test_holdout_quality_tells_a_learnable_accuracy_from_noise(genomes):
    from dnas.evolve.predictor import holdout_quality

    rng = random.Random(4)
    x = genomes.encode([genomes.random(rng) for _ in range(400)])
    w = torch.randn(genomes.num_features, generator=torch.Generator().manual_seed(0)) * 0.01
    learnable = holdout_quality(x, 0.8 + x @ w, 0.25, hidden=64, epochs=80)
    noise = 0.8 + 0.01 * torch.randn(400, generator=torch.Generator().manual_seed(5))
    random_labels = holdout_quality(x, noise, 0.25, hidden=64, epochs=80)
    assert learnable["holdout_samples"] == 100
    assert learnable["holdout_kendall"] > 0.6
    assert learnable["holdout_rmse"] < 0.6 * learnable["holdout_std"]
    assert abs(random_labels["holdout_kendall"]) < 0.2
    again = holdout_quality(x, 0.8 + x @ w, 0.25, hidden=64, epochs=80)
    assert again == learnable  # seeded: the same split, initialisation and figures
    assert random_labels["holdout_rmse"] > 0.8 * random_labels["holdout_std"]


def _width_fitness(genomes):
    """A stand-in accuracy: wider and higher-bit networks score more (what a budget limits)."""

    def fit(states):
        return [sum(s.width.values()) + sum(sum(b) for b in s.bits.values()) * 0.1 for s in states]

    return fit


def test_evolution_stays_within_budget_and_improves(genomes, space, table):
    targets = resolve_targets({"latency_frac": 0.3}, table.extremes(space))
    costs = ExactCost(space, table)
    rng = random.Random(4)
    res = evolve(
        genomes,
        costs.total,
        targets,
        _width_fitness(genomes),
        rng,
        generations=8,
        population=40,
        parents=10,
        mutations=20,
        crossovers=20,
    )
    best = [r["best_fitness"] for r in res.history]
    assert best == sorted(best)  # elitist: the best never gets worse
    assert best[-1] > best[0]
    for c in res.ranked:
        assert targets.fits(c.cost)
        lat, _ = table.arch_cost(space, c.state.to_arch(space))
        assert lat == pytest.approx(c.cost["latency_ms"], rel=1e-12)
    assert [c.fitness for c in res.ranked] == sorted((c.fitness for c in res.ranked), reverse=True)


def test_random_search_within_budget(genomes, space, table):
    targets = resolve_targets({"energy_frac": 0.4}, table.extremes(space))
    costs = ExactCost(space, table)
    res = random_search(
        genomes, costs.total, targets, _width_fitness(genomes), random.Random(5), 150
    )
    assert len(res.ranked) == 150 and all(targets.fits(c.cost) for c in res.ranked)
    assert len(res.history) == 2


def test_unreachable_budget_for_sampling(genomes, space, table):
    costs = ExactCost(space, table)
    with pytest.raises(BudgetError, match="too tight"):
        draw_within(
            lambda: genomes.random(random.Random(0)), costs.total, Targets(latency_ms=1e-6), 50
        )
