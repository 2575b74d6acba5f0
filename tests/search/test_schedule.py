"""The search module's schedule: warm-up, then Gumbel temperature decaying tau0 -> tau_min."""

from __future__ import annotations

import itertools
from functools import partial
from types import SimpleNamespace

import pytest
import torch

from dnas.cost.targets import TargetSpec
from dnas.search.losses import BudgetLoss
from dnas.search.module import SearchModule


def _module(space, table, warmup=2, tau0=5.0, tau_min=0.5, max_epochs=7):
    m = SearchModule(
        space=space,
        table=table,
        target=TargetSpec(latency_ms=0.5),
        budget=partial(BudgetLoss, kind="hinge"),
        weight_optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
        arch_optimizer=lambda p: torch.optim.Adam(p, lr=0.01),
        warmup_epochs=warmup,
        tau0=tau0,
        tau_min=tau_min,
    )
    m._trainer = SimpleNamespace(max_epochs=max_epochs)
    return m


def test_temperature_decays_geometrically_from_the_first_search_epoch(space, table):
    m = _module(space, table, warmup=2, tau0=5.0, tau_min=0.5, max_epochs=7)
    taus = [m.tau_at(e) for e in range(7)]
    assert taus[0] == taus[1] == taus[2] == pytest.approx(5.0)  # warm-up, then the first search
    assert taus[-1] == pytest.approx(0.5)  # the last epoch reaches tau_min
    ratios = [b / a for a, b in itertools.pairwise(taus[2:])]
    assert ratios == pytest.approx([0.1 ** (1 / 4)] * 4)  # 4 equal steps from epoch 2 to 6
    assert m.tau_at(100) == pytest.approx(0.5)  # never below tau_min


def test_one_search_epoch_uses_tau0(space, table):
    m = _module(space, table, warmup=1, max_epochs=2)
    assert m.tau_at(1) == pytest.approx(5.0)


def test_searching_starts_after_the_warmup(space, table):
    m = _module(space, table, warmup=2)
    for epoch, want in ((0, False), (1, False), (2, True), (5, True)):
        m._trainer.current_epoch = epoch
        assert m.current_epoch == epoch and m.searching == want


@pytest.mark.parametrize("bad", [dict(tau0=1.0, tau_min=2.0), dict(tau_min=0.0), dict(warmup=-1)])
def test_bad_schedules_are_refused(space, table, bad):
    with pytest.raises(ValueError):
        _module(space, table, **bad)
