"""The supernet's relaxed distribution and the expected cost, together (no Lightning)."""

from __future__ import annotations

import random

import pytest
import torch

from dnas.cost.expected import ExpectedCost
from dnas.supernet import SuperNet


def test_expected_cost_gradient_reaches_every_arch_parameter(space, table):
    net = SuperNet(space)
    # Move every ordered index off the grid's top so no gradient is trivially one-sided.
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("arch_index"):
                p.mul_(0.7)
    out = ExpectedCost(table, space)(net.relaxed())
    (out["latency_ms"] + out["energy_mj"]).backward()
    arch = dict(
        (n, p) for n, p in net.named_parameters() if any(p is q for q in net.arch_parameters())
    )
    assert arch, "the supernet has architecture parameters"
    missing = [n for n, p in arch.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no cost gradient reaches {missing}"


@pytest.mark.parametrize("seed", range(3))
def test_confident_supernet_costs_its_derived_architecture(space, table, seed):
    """Near one-hot kernels and integer indices: expected cost = the derived arch's table cost."""
    rng = random.Random(seed)
    net = SuperNet(space)
    target = space.random_arch(rng)
    with torch.no_grad():
        # Integer indices and peaked logits that point at a random architecture.
        for b, choice in zip(space.blocks, target.blocks):
            blk = next((x for x in net.searchable_blocks() if x.spec.index == b.index), None)
            if blk is None:
                continue
            logits = blk.kernel.arch_logits
            logits.fill_(-60.0)
            logits[list(space.kernel_choices(b.index)).index(choice.kernel)] = 60.0
            if blk.width.searchable:
                blk.width.arch_index.fill_(float(b.widths.index(choice.width)))
        for name, p in net.named_parameters():
            if name.endswith("arch_index") and "width" not in name:
                p.round_()
    derived = net.derive()
    lat, en = table.arch_cost(space, derived)
    out = ExpectedCost(table, space)(net.relaxed())
    assert out["latency_ms"].item() == pytest.approx(lat, rel=1e-9)
    assert out["energy_mj"].item() == pytest.approx(en, rel=1e-9)
    assert [b.kernel for b in derived.blocks] == [b.kernel for b in target.blocks]
