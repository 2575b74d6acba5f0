"""Derivation within budget: the derived architecture's exact cost never exceeds the target."""

from __future__ import annotations

import math
import random

import pytest
import torch

from dnas.cost.exact import ExactCost, cheapest_state
from dnas.cost.targets import BudgetError, Targets, resolve_targets
from dnas.derive import ArchState, derive_within_budget
from dnas.derive.budget import argmax_state
from tests.conftest import Relaxed


def random_relaxed(space, seed, peak=1.0):
    g = torch.Generator().manual_seed(seed)
    probs = {
        b.index: (peak * torch.randn(len(space.kernel_choices(b.index)), generator=g)).softmax(0)
        for b in space.blocks
    }
    widths = {b.index: torch.rand((), generator=g) * (len(b.widths) - 1) for b in space.blocks}
    bits = {
        cl.key: (
            torch.rand((), generator=g) * (len(cl.w_bits) - 1),
            torch.rand((), generator=g) * (len(cl.a_bits) - 1),
        )
        for cl in space.costed_layers()
    }
    return Relaxed(probs, widths, bits)


def test_arch_state_round_trip(space):
    for seed in range(5):
        arch = space.random_arch(random.Random(seed))
        assert ArchState.from_arch(space, arch).to_arch(space) == arch


@pytest.mark.parametrize("frac", [0.0, 0.05, 0.2, 0.5])
@pytest.mark.parametrize("seed", range(3))
def test_derived_cost_never_exceeds_latency_target(space, table, frac, seed):
    targets = resolve_targets({"latency_frac": frac}, table.extremes(space))
    arch, cost, _ = derive_within_budget(space, table, random_relaxed(space, seed), targets)
    space.validate_arch(arch)
    lat, _ = table.arch_cost(space, arch)
    assert lat <= targets.latency_ms * (1 + 1e-12)
    assert cost["latency_ms"] == pytest.approx(lat, rel=1e-12)
    assert arch.metrics["latency_ms"] == pytest.approx(lat, rel=1e-12)
    assert arch.metrics["target_latency_ms"] == targets.latency_ms


def test_both_targets_met(space, table):
    ext = table.extremes(space)
    targets = resolve_targets({"latency_frac": 0.15, "energy_frac": 0.1}, ext)
    arch, _, steps = derive_within_budget(space, table, random_relaxed(space, 7), targets)
    lat, en = table.arch_cost(space, arch)
    assert lat <= targets.latency_ms * (1 + 1e-12) and en <= targets.energy_mj * (1 + 1e-12)
    assert steps > 0


def test_argmax_kept_when_within_budget(space, table):
    relaxed = random_relaxed(space, 3)
    argmax = argmax_state(space, relaxed).to_arch(space)
    loose = Targets(latency_ms=table.arch_cost(space, argmax)[0] * 1.01)
    arch, _, steps = derive_within_budget(space, table, relaxed, loose)
    assert steps == 0 and arch == argmax


def test_repair_keeps_confident_kernels(space, table):
    # Kernels are near-certain; bits sit half-way between two choices: lowering bits loses far less
    # log-probability than changing a kernel, so the repair must keep every kernel.
    relaxed = random_relaxed(space, 4, peak=40.0)
    for key in relaxed.bit_index:
        relaxed.bit_index[key] = (torch.tensor(4.5), torch.tensor(4.5))
    for b in space.blocks:
        relaxed.width_index[b.index] = torch.tensor(float(len(b.widths) - 1))
    start = argmax_state(space, relaxed)
    start_lat = table.arch_cost(space, start.to_arch(space))[0]
    arch, _, steps = derive_within_budget(
        space, table, relaxed, Targets(latency_ms=0.9 * start_lat)
    )
    assert steps > 0
    assert ArchState.from_arch(space, arch).kernel == start.kernel


def test_cheapest_state_is_the_minimum(space, table):
    ext = table.extremes(space)
    s = cheapest_state(space, table, {"latency_ms": 1.0})
    assert table.arch_cost(space, s.to_arch(space))[0] == pytest.approx(ext["min_latency_ms"])


def test_unreachable_and_malformed_targets(space, table):
    ext = table.extremes(space)
    with pytest.raises(BudgetError, match=r"unreachable: the cheapest network of the space costs"):
        resolve_targets({"latency_ms": ext["min_latency_ms"] * 0.5}, ext)
    with pytest.raises(BudgetError, match="not both"):
        resolve_targets({"latency_ms": 1.0, "latency_frac": 0.5}, ext)
    with pytest.raises(BudgetError, match=r"\[0, 1\]"):
        resolve_targets({"energy_frac": 1.5}, ext)
    with pytest.raises(BudgetError, match="allowed"):
        resolve_targets({"latency_s": 1.0}, ext)
    t = resolve_targets({"latency_frac": 0.0}, ext)
    assert t.latency_ms == pytest.approx(ext["min_latency_ms"])


@pytest.mark.parametrize("half", [0.5, 1.5, 2.5, 3.5, 4.5])
def test_supernet_and_derivation_round_ties_alike(space, half):
    """One rounding rule: at θ = 2.5 and β = 4.5 the supernet's argmax and the derivation agree
    (both round half up; Python's round would give 2 and 4)."""
    from dnas.supernet import SuperNet

    supernet = SuperNet(space)
    for layer in supernet._layers.values():
        for q in (layer.wq.bits, layer.aq.bits):
            if q.searchable:
                q.arch_index.data.fill_(min(half, q.num_choices - 1.5))
    for block in supernet.searchable_blocks():
        if block.width.searchable:
            block.width.arch_index.data.fill_(min(half, block.width.num_choices - 1.5))
    from_supernet = supernet.derive()
    from_derive = argmax_state(space, supernet.relaxed()).to_arch(space)
    assert from_derive == from_supernet
    # and the tie went up
    block = next(b for b in supernet.searchable_blocks() if b.width.searchable)
    theta = float(block.width.arch_index)
    assert from_supernet.blocks[block.spec.index].width == block.spec.widths[int(theta) + 1]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("frac", [0.15, 0.3, 0.6])
def test_fill_uses_more_budget_and_only_rounds_up(space, table, seed, frac):
    """The fill never leaves the budget, never lowers the cost, and changes an ordered choice
    only from its nearest index to the ceiling of its continuous index."""
    import math

    relaxed = random_relaxed(space, seed)
    targets = resolve_targets({"latency_frac": frac}, table.extremes(space))
    plain, c0, _ = derive_within_budget(space, table, relaxed, targets)
    filled, c1, _ = derive_within_budget(space, table, relaxed, targets, fill=True)
    assert c1["latency_ms"] <= targets.latency_ms * (1 + 1e-12)
    assert c1["latency_ms"] >= c0["latency_ms"]
    s0, s1 = ArchState.from_arch(space, plain), ArchState.from_arch(space, filled)
    for b in space.blocks:
        if s1.width[b.index] != s0.width[b.index] and s0.kernel[b.index] == s1.kernel[b.index]:
            x = float(relaxed.width_index[b.index])
            assert s1.width[b.index] == math.ceil(x) > s0.width[b.index]
    for key, (wi, ai) in s1.bits.items():
        xw, xa = (float(v) for v in relaxed.bit_index[key])
        if wi != s0.bits[key][0]:
            assert wi == math.ceil(xw)
        if ai != s0.bits[key][1]:
            assert ai == math.ceil(xa)


def test_fill_reaches_a_network_no_single_upgrade_of_which_fits(space, table):
    from dnas.derive.budget import _apply, _fill_moves, _scores

    relaxed = random_relaxed(space, 7)
    targets = resolve_targets({"latency_frac": 0.4}, table.extremes(space))
    filled, _, _ = derive_within_budget(space, table, relaxed, targets, fill=True)
    state = ArchState.from_arch(space, filled)
    costs = ExactCost(space, table)
    for move, _ in _fill_moves(space, state, _scores(space, relaxed), costs, 4.0):
        assert not targets.fits(costs.total(_apply(state, move)))


# ------------------------------------------------------------------ derive="budget" (Lagrangian)
def _objective(lag, costs, state, lam, active):
    from dnas.derive.budget import _state_score

    c = costs.total(state)
    return _state_score(lag, state, costs) - lam * sum(c[m] / t for m, t in active.items())


@pytest.mark.parametrize("lam", [-3.0, 0.0, 0.7, 5.0])
def test_lagrangian_state_beats_every_single_change(space, table, lam):
    """The per-λ maximiser is exact: no one-step change of any choice raises its objective."""
    from dnas.derive.budget import _apply, _Lagrangian, _moves, _upgrades

    relaxed = random_relaxed(space, 3)
    active = {"latency_ms": table.extremes(space)["max_latency_ms"] * 0.3}
    lag = _Lagrangian(space, table, relaxed, active)
    costs = ExactCost(space, table)
    state = lag.state(lam)
    best = _objective(lag, costs, state, lam, active)
    moves = [*_moves(space, state, costs), *_upgrades(space, state, costs)]
    assert len(moves) > 20
    for move in moves:
        assert _objective(lag, costs, _apply(state, move), lam, active) <= best + 1e-9, move


def test_lagrangian_state_at_zero_is_the_argmax(space, table):
    from dnas.derive.budget import _Lagrangian

    for seed in range(4):
        relaxed = random_relaxed(space, seed)
        lag = _Lagrangian(space, table, relaxed, {"latency_ms": 1.0})
        assert lag.state(0.0).to_arch(space) == argmax_state(space, relaxed).to_arch(space)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    "target",
    [
        {"latency_frac": 0.05},
        {"latency_frac": 0.3},
        {"energy_frac": 0.5},
        {"latency_frac": 0.2, "energy_frac": 0.15},
    ],
)
def test_budget_strategy_fits_and_spends_at_least_as_much(space, table, seed, target):
    from dnas.derive.budget import _apply, _upgrades

    relaxed = random_relaxed(space, seed)
    targets = resolve_targets(target, table.extremes(space))
    active = targets.active()
    arch, cost, _ = derive_within_budget(space, table, relaxed, targets, strategy="budget")
    lat, en = table.arch_cost(space, arch)
    assert cost["latency_ms"] == pytest.approx(lat, rel=1e-12)
    assert targets.fits({"latency_ms": lat, "energy_mj": en})
    _, c_fill, _ = derive_within_budget(space, table, relaxed, targets, strategy="fill")
    norm = lambda c: sum(c[m] / t for m, t in active.items())  # noqa: E731
    assert norm(cost) >= norm(c_fill) - 1e-12
    # maximal: no single upgrade still fits
    costs = ExactCost(space, table)
    state = ArchState.from_arch(space, arch)
    for move in _upgrades(space, state, costs):
        c = costs.total(_apply(state, move))
        assert not (targets.fits(c) and norm(c) > norm(cost) + 1e-12), move


def test_budget_strategy_refuses_an_unreachable_budget(space, table):
    ext = table.extremes(space)
    targets = Targets(latency_ms=ext["min_latency_ms"] * 0.9)
    with pytest.raises(BudgetError, match="no architecture"):
        derive_within_budget(space, table, random_relaxed(space, 0), targets, strategy="budget")


def test_unknown_strategy_is_refused(space, table):
    targets = resolve_targets({"latency_frac": 0.3}, table.extremes(space))
    with pytest.raises(ValueError, match="choose from"):
        derive_within_budget(space, table, random_relaxed(space, 0), targets, strategy="greedy")


def test_marginal_depth_keeps_a_block_whose_kernels_share_the_mass(space, table):
    """Skip at 0.44 against kernels at 0.35, 0.10, 0.11 (a default search after one epoch): the
    joint rule skips the block, the marginal rule keeps it (p(keep) = 0.56) with kernel 3."""
    from dnas.derive.budget import kernel_scores

    relaxed = random_relaxed(space, 0)
    skippable = [b.index for b in space.blocks if "skip" in space.kernel_choices(b.index)]
    fixed = [b.index for b in space.blocks if b.index not in skippable]
    for i in skippable:
        relaxed.kernel_probs[i] = torch.tensor([0.35, 0.10, 0.11, 0.44])
    joint = argmax_state(space, relaxed, "joint")
    marginal = argmax_state(space, relaxed, "marginal")
    assert all(space.kernel_choices(i)[joint.kernel[i]] == "skip" for i in skippable)
    assert all(space.kernel_choices(i)[marginal.kernel[i]] == 3 for i in skippable)
    scores = kernel_scores(space, relaxed, "marginal")
    assert scores[skippable[0]].tolist() == pytest.approx(
        [math.log(0.56), math.log(0.56 * 0.10 / 0.35), math.log(0.56 * 0.11 / 0.35), math.log(0.44)]
    )
    for i in fixed:  # nothing to decide about depth: the same ranking either way
        assert marginal.kernel[i] == joint.kernel[i]
    # a block skipped at p > 1/2 stays skipped
    for i in skippable:
        relaxed.kernel_probs[i] = torch.tensor([0.2, 0.1, 0.1, 0.6])
    marginal = argmax_state(space, relaxed, "marginal")
    assert all(space.kernel_choices(i)[marginal.kernel[i]] == "skip" for i in skippable)


@pytest.mark.parametrize("lam", [-3.0, 0.7])
def test_lagrangian_with_marginal_depth_beats_every_single_change(space, table, lam):
    from dnas.derive.budget import _apply, _Lagrangian, _moves, _upgrades

    relaxed = random_relaxed(space, 5)
    active = {"latency_ms": table.extremes(space)["max_latency_ms"] * 0.3}
    lag = _Lagrangian(space, table, relaxed, active, "marginal")
    costs = ExactCost(space, table)
    state = lag.state(lam)
    best = _objective(lag, costs, state, lam, active)
    for move in [*_moves(space, state, costs), *_upgrades(space, state, costs)]:
        assert _objective(lag, costs, _apply(state, move), lam, active) <= best + 1e-9, move
    assert lag.state(0.0).to_arch(space) == argmax_state(space, relaxed, "marginal").to_arch(space)


def test_unknown_depth_rule_is_refused(space, table):
    from dnas.errors import DnasError

    targets = resolve_targets({"latency_frac": 0.3}, table.extremes(space))
    with pytest.raises(DnasError, match="depth rule 'deep' is not one of"):
        derive_within_budget(space, table, random_relaxed(space, 0), targets, depth="deep")
