"""Two targets checked together: check_jointly_feasible."""

from __future__ import annotations

import re

import pytest

from dnas.cost.exact import ExactCost, cheapest_state
from dnas.cost.targets import BudgetError, Targets, check_jointly_feasible, fitting_state
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
    with pytest.raises(BudgetError) as err:
        check_jointly_feasible(targets, space, table)
    said = str(err.value)
    assert said.startswith(f"no architecture of 'fmnist_mbv2' meets {targets.describe()} together")
    # the closest network named is one that exists and misses a target
    lat, en = (float(x) for x in re.fullmatch(r".*closest: (\S+) ms, (\S+) mJ\)", said).groups())
    assert lat >= ext["min_latency_ms"] * (1 - 1e-3) and en >= ext["min_energy_mj"] * (1 - 1e-3)
    assert lat > ext["min_latency_ms"] * (1 + 1e-4) or en > ext["min_energy_mj"] * (1 + 1e-4)
    # each of the two alone is met (by the fastest, and by the most frugal network)
    check_jointly_feasible(Targets(latency_ms=ext["min_latency_ms"]), space, table)
    check_jointly_feasible(Targets(energy_mj=ext["min_energy_mj"]), space, table)


def test_a_pair_met_off_the_equal_weighting_is_accepted():
    """Targets set at the exact cost of a network cheapest for some other mix of the two metrics:
    that network meets both, though the network cheapest for cost/target summed may miss one."""
    space = load_space("fmnist_mbv2")
    exact = ExactCost(space, table := random_table(space, seed=5))
    missed_by_equal_weighting = 0
    for alpha in (0.02, 0.1, 0.3, 0.7, 0.9, 0.98):
        lat_w, en_w = alpha, 1 - alpha
        cost = exact.total(cheapest_state(space, table, {"latency_ms": lat_w, "energy_mj": en_w}))
        targets = Targets(latency_ms=cost["latency_ms"], energy_mj=cost["energy_mj"])
        check_jointly_feasible(targets, space, table)  # met by that network: never refused
        state, found = fitting_state(targets, space, table)  # derivation's last resort
        assert targets.fits(found) and found == exact.total(state)
        equal = {"latency_ms": 1 / targets.latency_ms, "energy_mj": 1 / targets.energy_mj}
        missed_by_equal_weighting += not targets.fits(
            exact.total(cheapest_state(space, table, equal))
        )
    assert missed_by_equal_weighting > 0  # the case a single weighting got wrong is among them


def test_targets_met_together_pass(space, table):
    ext = table.extremes(space)
    check_jointly_feasible(
        Targets(latency_ms=ext["max_latency_ms"], energy_mj=ext["max_energy_mj"]), space, table
    )
    # on the BitFusion table the fastest network is also the most frugal one
    check_jointly_feasible(
        Targets(latency_ms=ext["min_latency_ms"], energy_mj=ext["min_energy_mj"]), space, table
    )


def test_one_target_fits_its_cheapest_network_or_is_refused(space, table):
    ext = table.extremes(space)
    _, cost = fitting_state(Targets(energy_mj=ext["min_energy_mj"]), space, table)
    assert cost["energy_mj"] == pytest.approx(ext["min_energy_mj"], rel=1e-12)
    with pytest.raises(BudgetError, match="the cheapest costs"):
        fitting_state(Targets(latency_ms=ext["min_latency_ms"] * 0.99), space, table)


def test_a_single_target_is_not_checked_here(space, table):
    """One target is resolve_targets' to refuse (below the cheapest network), not this check's."""
    ext = table.extremes(space)
    check_jointly_feasible(Targets(latency_ms=ext["min_latency_ms"] / 2), space, table)
    check_jointly_feasible(Targets(), space, table)
