"""Two targets checked together: check_jointly_feasible."""

from __future__ import annotations

import pytest

from dnas.cost.exact import ExactCost, cheapest_state
from dnas.cost.targets import BudgetError, Targets, check_jointly_feasible
from dnas.space import load_space
from tests.cost.fake_table import random_table


def test_targets_each_reachable_but_not_together_are_refused():
    space = load_space("fmnist_mbv2")
    table = random_table(space, seed=5)  # latency and energy drawn independently
    ext = table.extremes(space)
    fastest = cheapest_state(space, table, {"latency_ms": 1.0})
    frugal = cheapest_state(space, table, {"energy_mj": 1.0})
    assert fastest != frugal  # so no network has both the least latency and the least energy
    targets = Targets(latency_ms=ext["min_latency_ms"], energy_mj=ext["min_energy_mj"])
    closest = ExactCost(space, table).total(
        cheapest_state(
            space, table, {"latency_ms": 1 / targets.latency_ms, "energy_mj": 1 / targets.energy_mj}
        )
    )
    with pytest.raises(BudgetError) as err:
        check_jointly_feasible(targets, space, table)
    assert str(err.value) == (
        f"no architecture of 'fmnist_mbv2' meets {targets.describe()} together (closest: "
        f"{closest['latency_ms']:.4g} ms, {closest['energy_mj']:.4g} mJ)"
    )
    # each of the two alone is met (by the fastest, and by the most frugal network)
    check_jointly_feasible(Targets(latency_ms=ext["min_latency_ms"]), space, table)
    check_jointly_feasible(Targets(energy_mj=ext["min_energy_mj"]), space, table)


def test_targets_met_together_pass(space, table):
    ext = table.extremes(space)
    check_jointly_feasible(
        Targets(latency_ms=ext["max_latency_ms"], energy_mj=ext["max_energy_mj"]), space, table
    )
    # on the BitFusion table the fastest network is also the most frugal one
    check_jointly_feasible(
        Targets(latency_ms=ext["min_latency_ms"], energy_mj=ext["min_energy_mj"]), space, table
    )


def test_a_single_target_is_not_checked_here(space, table):
    """One target is resolve_targets' to refuse (below the cheapest network), not this check's."""
    ext = table.extremes(space)
    check_jointly_feasible(Targets(latency_ms=ext["min_latency_ms"] / 2), space, table)
    check_jointly_feasible(Targets(), space, table)
