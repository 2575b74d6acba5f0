"""Budget losses: values at, above and below the target; λ's dual ascent."""

from __future__ import annotations

import math

import pytest
import torch

from dnas.cost.targets import Targets
from dnas.search.losses import BudgetLoss

T = Targets(latency_ms=2.0)


def term(kind, e, **kw):
    loss = BudgetLoss(T, kind, **kw)
    ce = torch.tensor(1.5)
    x = torch.tensor(e, dtype=torch.float64, requires_grad=True)
    out = loss(ce, {"latency_ms": x, "energy_mj": torch.tensor(1.0)})
    out.backward()
    return out.item(), x.grad.item()


def test_abs():
    assert term("abs", 3.0, lam=2.0) == pytest.approx((1.0, 1.0))
    assert term("abs", 1.0, lam=2.0) == pytest.approx((1.0, -1.0))


def test_hinge_only_penalises_overshoot():
    v, g = term("hinge", 3.0, lam=2.0)
    assert v == pytest.approx(2.0 * 0.25) and g == pytest.approx(2.0 * 2 * 0.5 / 2.0)
    assert term("hinge", 1.0, lam=2.0) == (0.0, 0.0)


def test_fbnet_multiplies_the_task_loss():
    v, g = term("fbnet", 2.0, alpha=0.2, beta=0.6)
    # At the target log(e·E/T) = 1, so CE·α·1 − CE.
    assert v == pytest.approx(1.5 * 0.2 - 1.5)
    assert g > 0  # more latency, more loss


def test_lagrangian_dual_ascent():
    loss = BudgetLoss(T, "lagrangian", lam=0.5, eta=0.1)
    over = {"latency_ms": torch.tensor(3.0), "energy_mj": torch.tensor(0.0)}
    assert loss(torch.tensor(1.0), over).item() == pytest.approx(0.5 * 0.5)
    loss.update(over)
    assert loss.lam.item() == pytest.approx(0.5 + 0.1 * 0.5)
    under = {"latency_ms": torch.tensor(0.0), "energy_mj": torch.tensor(0.0)}
    for _ in range(20):
        loss.update(under)
    assert loss.lam.item() == 0.0  # projected onto λ >= 0


def test_two_targets_and_none():
    both = BudgetLoss(Targets(latency_ms=1.0, energy_mj=1.0), "hinge", lam=1.0)
    e = {"latency_ms": torch.tensor(2.0), "energy_mj": torch.tensor(3.0)}
    assert both(torch.tensor(1.0), e).item() == pytest.approx(1.0 + 4.0)
    none = BudgetLoss(Targets(), "hinge")
    assert none(torch.tensor(1.0), e).item() == 0.0


def test_bad_kind():
    with pytest.raises(ValueError, match="allowed"):
        BudgetLoss(T, "l2")
    assert math.isfinite(term("fbnet", 0.01)[0])
