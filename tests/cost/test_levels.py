"""Searching bits at the levels whose cost differs on BitFusion (``search.bit_levels=hardware``)."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from dnas.cost.exact import ExactCost
from dnas.cost.expected import ExpectedCost
from dnas.cost.levels import (
    levels_of,
    restrict_table,
    restrict_to_levels,
    search_levels,
)
from dnas.cost.targets import TargetSpec
from dnas.errors import DnasError
from dnas.evolve.uniform import uniform_state
from dnas.search.losses import BudgetLoss
from dnas.space import ArchState, LayerKey


def test_levels_of_latency_and_energy():
    assert levels_of(range(2, 9), 8, 2, ["latency_ms"]) == [2, 4, 8]
    assert levels_of(range(2, 9), 8, 2, []) == [2, 4, 8]
    assert levels_of(range(2, 9), 8, 2, ["energy_mj"]) == [2, 4, 6, 8]
    assert levels_of([8], 8, 2, ["latency_ms"]) == [8]  # a fixed layer stays fixed


@pytest.fixture(scope="module")
def sub(space):
    return restrict_to_levels(space, 8, 2, ["latency_ms"])


@pytest.fixture(scope="module")
def sub_table(table, space, sub):
    return restrict_table(table, space, sub)


def test_restricted_space_keeps_layers_and_cuts_bits(space, sub):
    assert [b.widths for b in sub.blocks] == [b.widths for b in space.blocks]
    assert [b.kernel_choices for b in sub.blocks] == [b.kernel_choices for b in space.blocks]
    for b in sub.blocks:
        assert b.bits.w_bits == (2, 4, 8) and b.bits.a_bits == (2, 4, 8)
    assert sub.stem.bits == space.stem.bits  # fixed at 8
    assert sub.fingerprint() != space.fingerprint()


def test_restricted_table_holds_the_full_tables_costs(table, space, sub, sub_table):
    sub_table.check_space(sub)
    full = {c.key: c for c in space.costed_layers()}
    for cl in sub.costed_layers():
        t, s = table.entries[cl.key], sub_table.entries[cl.key]
        for i, wb in enumerate(cl.w_bits):
            for j, ab in enumerate(cl.a_bits):
                wi, ai = full[cl.key].w_bits.index(wb), full[cl.key].a_bits.index(ab)
                assert torch.equal(s.latency_ms[:, :, i, j], t.latency_ms[:, :, wi, ai])
                assert torch.equal(s.energy_mj[:, :, i, j], t.energy_mj[:, :, wi, ai])


def test_a_network_costs_the_same_in_both(table, space, sub, sub_table):
    for bits in (2, 4, 8):
        arch = uniform_state(space, bits, 5, "short", 0.5).to_arch(space)
        full = ExactCost(space, table).total(ArchState.from_arch(space, arch))
        cut = ExactCost(sub, sub_table).total(ArchState.from_arch(sub, arch))
        assert full == cut


def test_the_budget_gradient_reaches_bits_above_four(space, table, sub, sub_table):
    """The point of the levels: at 8 bits on a depthwise conv, the expected latency's slope in
    the bit index is small over every integer (8 -> 7 computes alike) and large over the levels
    (8 -> 4 halves the compute)."""
    from tests.conftest import Relaxed

    def slope(sp, tb, top):
        bit_index = {}
        for cl in sp.costed_layers():
            x = torch.tensor(float(len(cl.w_bits) - 1), dtype=torch.float64, requires_grad=True)
            bit_index[cl.key] = (x, x)
        relaxed = Relaxed(
            {b.index: torch.eye(len(b.kernel_choices))[0] for b in sp.blocks},
            {b.index: torch.tensor(float(len(b.widths) - 1)) for b in sp.blocks},
            bit_index,
        )
        ExpectedCost(tb, sp)(relaxed)["latency_ms"].backward()
        x = bit_index[LayerKey("dw", 0)][0]
        return float(x.grad)

    assert slope(space, table, 8) < 0.1 * slope(sub, sub_table, 8)


def test_an_unknown_setting_is_refused(space):
    with pytest.raises(DnasError, match="bit_levels='fast' is not one of"):
        search_levels("fast", space, 8, 2, ["latency_ms"])
    assert search_levels("all", space, 8, 2, ["latency_ms"]) is space


def test_restricting_to_bits_the_table_lacks_is_refused(table, space, sub, sub_table):
    with pytest.raises(DnasError, match="not choices of the table"):
        restrict_table(sub_table, sub, space)


def _module(space, table, **kw):
    from dnas.search.module import SearchModule

    return SearchModule(
        weight_optimizer=partial(torch.optim.SGD, lr=0.1),
        arch_optimizer=partial(torch.optim.Adam, lr=0.01),
        budget=partial(BudgetLoss, kind="hinge"),
        space=space,
        table=table,
        target=TargetSpec(latency_frac=0.1),
        **kw,
    )


def test_a_restricted_search_derives_a_network_of_the_full_space(space, table):
    from dnas.checkpoint import CHECKPOINT_FORMAT, CheckpointError

    module = _module(space, table, bit_levels="hardware")
    for b in module.supernet.searchable_blocks():
        assert b.dw.wq.bits.bits == (2, 4, 8)
    arch, cost = module.derive(0)
    assert arch.space_fingerprint == space.fingerprint()
    space.validate_arch(arch)
    assert ExactCost(space, table).total(ArchState.from_arch(space, arch)) == cost
    assert cost["latency_ms"] <= module.targets.active()["latency_ms"]
    identity = {**module.checkpoint_identity(), "format": CHECKPOINT_FORMAT}
    with pytest.raises(CheckpointError, match="other bit choices"):
        _module(space, table).check_checkpoint_identity(identity)
