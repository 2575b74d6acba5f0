"""The expected cost: exact at one-hot kernels and integer indices, gradients match finite diffs."""

from __future__ import annotations

import random

import pytest
import torch

from dnas.cost.expected import ExpectedCost, interp3
from dnas.cost.hardware import BitFusionConfig
from dnas.cost.layer import arch_layer_shapes
from dnas.cost.oracle import layer_cost
from dnas.space import LayerKey
from tests.conftest import Relaxed


def one_hot_relaxed(space, arch) -> Relaxed:
    idx = space.arch_indices(arch)
    probs, widths, bits = {}, {}, {}
    for b, choice in zip(space.blocks, arch.blocks):
        ks = list(space.kernel_choices(b.index))
        probs[b.index] = torch.nn.functional.one_hot(
            torch.tensor(ks.index(choice.kernel)), len(ks)
        ).double()
        widths[b.index] = torch.tensor(float(b.widths.index(choice.width)), dtype=torch.float64)
    for cl in space.costed_layers():
        if cl.key in idx:
            _, _, wb, ab = idx[cl.key]
        else:  # a skipped block: its bits do not matter
            wb = ab = 0
        bits[cl.key] = (torch.tensor(float(wb)), torch.tensor(float(ab)))
    return Relaxed(probs, widths, bits)


@pytest.mark.parametrize("seed", range(4))
def test_one_hot_equals_table_sum_equals_cost_model(space, table, seed):
    arch = space.random_arch(random.Random(seed))
    got = ExpectedCost(table, space)(one_hot_relaxed(space, arch))
    lat, en = table.arch_cost(space, arch)
    assert got["latency_ms"].item() == pytest.approx(lat, rel=1e-12)
    assert got["energy_mj"].item() == pytest.approx(en, rel=1e-12)
    hw = BitFusionConfig()
    shapes = arch_layer_shapes(space, arch).values()
    assert lat == pytest.approx(sum(layer_cost(s, hw).latency_ms for s in shapes), rel=1e-12)


def test_largest_and_smallest(space, table):
    cost = ExpectedCost(table, space)
    for arch in (space.largest_arch(), space.smallest_arch()):
        got = cost(one_hot_relaxed(space, arch))["latency_ms"].item()
        assert got == pytest.approx(table.arch_cost(space, arch)[0], rel=1e-12)


def random_leaves(space, seed):
    g = torch.Generator().manual_seed(seed)
    alpha = {
        b.index: torch.randn(
            len(space.kernel_choices(b.index)), generator=g, dtype=torch.float64, requires_grad=True
        )
        for b in space.blocks
    }
    theta = {
        b.index: (
            torch.rand((), generator=g, dtype=torch.float64) * (len(b.widths) - 1)
        ).requires_grad_()
        for b in space.blocks
    }
    beta = {}
    for cl in space.costed_layers():
        beta[cl.key] = tuple(
            (torch.rand((), generator=g, dtype=torch.float64) * (n - 1)).requires_grad_()
            for n in (len(cl.w_bits), len(cl.a_bits))
        )
    return alpha, theta, beta


def test_gradients_reach_every_arch_parameter_and_match_finite_differences(space, table):
    cost = ExpectedCost(table, space)
    alpha, theta, beta = random_leaves(space, 0)

    def f():
        r = Relaxed({b: a.softmax(0) for b, a in alpha.items()}, theta, beta)
        out = cost(r)
        return out["latency_ms"] + 0.5 * out["energy_mj"]

    f().backward()
    leaves = list(alpha.values()) + list(theta.values())
    leaves += [
        x
        for cl in space.costed_layers()
        if cl.key.block >= 0
        for x in beta[cl.key]
        if x.shape == ()
    ]
    for leaf in list(alpha.values()) + list(theta.values()):
        assert leaf.grad is not None and leaf.grad.abs().sum() > 0
    for cl in space.costed_layers():
        if cl.key.block >= 0 and len(cl.w_bits) > 1:
            assert beta[cl.key][0].grad.abs() > 0 and beta[cl.key][1].grad.abs() > 0
    # Central finite differences on a few parameters (multilinear: exact inside a grid cell).
    eps = 1e-6
    for leaf in (alpha[0], theta[2], beta[LayerKey("dw", 3)][0], beta[LayerKey("expand", 1)][1]):
        flat = leaf.detach().view(-1)
        for j in range(flat.numel()):
            with torch.no_grad():
                flat[j] += eps
                up = f().item()
                flat[j] -= 2 * eps
                down = f().item()
                flat[j] += eps
            assert leaf.grad.view(-1)[j].item() == pytest.approx(
                (up - down) / (2 * eps), rel=1e-5, abs=1e-9
            )


def test_interp3_exact_at_grid_points_and_linear_between():
    g = torch.arange(24, dtype=torch.float64).reshape(2, 3, 4) ** 1.5
    for i, j, k in [(0, 0, 0), (1, 2, 3), (0, 1, 2)]:
        got = interp3(g, torch.tensor(float(i)), torch.tensor(float(j)), torch.tensor(float(k)))
        assert got.item() == g[i, j, k].item()
    mid = interp3(g, torch.tensor(0.5), torch.tensor(1.0), torch.tensor(2.0))
    assert mid.item() == pytest.approx((g[0, 1, 2] + g[1, 1, 2]).item() / 2)


def test_skip_costs_nothing(space, table):
    cost = ExpectedCost(table, space)
    arch = space.largest_arch()
    r = one_hot_relaxed(space, arch)
    skippable = [b.index for b in space.blocks if "skip" in space.kernel_choices(b.index)]
    b = skippable[0]
    full = cost(r)["latency_ms"].item()
    r.kernel_probs[b] = torch.zeros_like(r.kernel_probs[b])
    r.kernel_probs[b][-1] = 1.0
    skipped = cost(r)["latency_ms"].item()
    key_cost = sum(
        table.entries[k].latency_ms[i].item()
        for k, i in space.arch_indices(arch).items()
        if k.block == b
    )
    assert full - skipped == pytest.approx(key_cost, rel=1e-9)
