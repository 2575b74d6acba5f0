"""Budget targets: latency (ms) and/or energy (mJ), given absolutely or as a fraction of the space."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from dnas.cost.exact import ExactCost, cheapest_state
from dnas.cost.table import METRICS, CostTable
from dnas.errors import DnasError
from dnas.space import ArchState, SearchSpace

_UNIT = {"latency_ms": "ms", "energy_mj": "mJ"}


class BudgetError(DnasError):
    """A budget that is malformed or that no architecture of the space can meet."""


@dataclass(frozen=True)
class Targets:
    """Upper bounds on the derived network's exact cost; None means unconstrained."""

    latency_ms: float | None = None
    energy_mj: float | None = None

    def active(self) -> dict[str, float]:
        return {m: getattr(self, m) for m in METRICS if getattr(self, m) is not None}

    def fits(self, cost: Mapping[str, float], tol: float = 1e-12) -> bool:
        return all(cost[m] <= t * (1 + tol) for m, t in self.active().items())

    def describe(self) -> str:
        return ", ".join(f"{m} <= {t:.4g} {_UNIT[m]}" for m, t in self.active().items()) or "none"


@dataclass(frozen=True)
class TargetSpec:
    """A budget as given on the command line or in a config: absolute or a fraction of the space.

    At most one of each pair; a fraction f means cheapest + f·(dearest − cheapest) of the space.
    ``resolve`` turns it into absolute ``Targets`` once the space's cost table is known.
    """

    latency_ms: float | None = None
    latency_frac: float | None = None
    energy_mj: float | None = None
    energy_frac: float | None = None

    def __post_init__(self) -> None:
        for base in ("latency", "energy"):
            absolute = "latency_ms" if base == "latency" else "energy_mj"
            if getattr(self, absolute) is not None and getattr(self, f"{base}_frac") is not None:
                raise BudgetError(f"give either target.{absolute} or target.{base}_frac, not both")

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any] | None) -> TargetSpec:
        """From a config mapping (null values ignored); unknown keys are a ``BudgetError``."""
        spec = {k: v for k, v in (spec or {}).items() if v is not None}
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise BudgetError(f"unknown target key(s) {unknown}; allowed: {sorted(allowed)}")
        return cls(**spec)

    def to_dict(self) -> dict[str, float]:
        """The keys that are set."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }

    def resolve(self, extremes: Mapping[str, float]) -> Targets:
        """Absolute targets, checked against what the space can reach (see ``resolve_targets``)."""
        return resolve_targets(self.to_dict(), extremes)


def check_jointly_feasible(targets: Targets, space: SearchSpace, table: CostTable) -> None:
    """Refuse, before any training, two targets that no architecture of the space meets together.

    Each target alone is within the space's reach once ``resolve_targets`` accepted it, but the
    fastest network need not be the most frugal. A single target is not checked here.

    Raises:
        BudgetError: ``fitting_state`` finds no network meeting both; the message gives the
            closest one's latency and energy.
    """
    if len(targets.active()) >= 2:
        fitting_state(targets, space, table)


def fitting_state(
    targets: Targets, space: SearchSpace, table: CostTable
) -> tuple[ArchState, dict[str, float]]:
    """A network of the space that meets every target, and its exact cost.

    One target: the network cheapest in its metric. Two: the networks tried are the exactly
    cheapest ones for weighted costs α·latency/target_latency + (1−α)·energy/target_energy, the
    vertices of the convex hull of the space's latency-energy front. Along it latency falls and
    energy rises as α grows, so a bisection on α finds the two neighbouring vertices around the
    latency target; the targets are refused only when neither meets both (so a pair that only a
    network inside a concave dent of the front meets would be refused too).

    Raises:
        BudgetError: no network tried meets every target; the message gives the closest one's
            latency and energy (the least worst ratio of cost to target).
    """
    active = targets.active()
    exact = ExactCost(space, table)
    if len(active) == 1:
        (metric,) = active
        state = cheapest_state(space, table, {metric: 1.0})
        cost = exact.total(state)
        if targets.fits(cost):
            return state, cost
        raise BudgetError(
            f"no architecture of {space.name!r} meets {targets.describe()}: the cheapest costs "
            f"{cost[metric]:.4g}"
        )
    t_lat, t_en = active["latency_ms"], active["energy_mj"]
    closest, worst = None, math.inf
    lo, hi = _EPS, 1.0 - _EPS  # both weights > 0: ties in one metric go to the other
    for step in range(_BISECTIONS):
        alpha = lo if step == 0 else hi if step == 1 else (lo + hi) / 2
        weights = {"latency_ms": alpha / t_lat, "energy_mj": (1 - alpha) / t_en}
        state = cheapest_state(space, table, weights)
        cost = exact.total(state)
        if targets.fits(cost):
            return state, cost
        ratio = max(cost["latency_ms"] / t_lat, cost["energy_mj"] / t_en)
        if ratio < worst:
            closest, worst = cost, ratio
        if step >= 2:
            if cost["latency_ms"] > t_lat:
                lo = alpha  # too slow: weigh latency more
            else:
                hi = alpha  # fast enough, too costly in energy: weigh energy more
    lat, en = closest["latency_ms"], closest["energy_mj"]
    raise BudgetError(
        f"no architecture of {space.name!r} meets {targets.describe()} "
        f"together (closest: {lat:.4g} ms, {en:.4g} mJ)"
    )


_EPS = 1e-9
_BISECTIONS = 50  # two ends, then halvings of α down to ~1e-14


def resolve_targets(spec: Mapping[str, Any] | None, extremes: Mapping[str, float]) -> Targets:
    """Targets from a config mapping, checked against what the space can reach.

    Args:
        spec: keys ``latency_ms`` / ``latency_frac`` and ``energy_mj`` / ``energy_frac`` (at most one
            of each pair; a fraction f means min + f·(max − min) of the space); null values ignored.
        extremes: ``CostTable.extremes`` (``min_latency_ms``, ``max_latency_ms``, ...).

    Raises:
        BudgetError: unknown keys, both forms of one target, a fraction outside [0, 1], or a target
            below the cheapest network of the space (the message names the cheapest reachable cost).
    """
    spec = {k: v for k, v in (spec or {}).items() if v is not None}
    allowed = {"latency_ms", "latency_frac", "energy_mj", "energy_frac"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise BudgetError(f"unknown target key(s) {unknown}; allowed: {sorted(allowed)}")
    out = {}
    for metric in METRICS:
        base = metric.split("_")[0]
        absolute, frac = spec.get(metric), spec.get(f"{base}_frac")
        if absolute is not None and frac is not None:
            raise BudgetError(f"give either target.{metric} or target.{base}_frac, not both")
        lo, hi = extremes[f"min_{metric}"], extremes[f"max_{metric}"]
        if frac is not None:
            frac = _number(f"target.{base}_frac", frac)
            if not 0.0 <= frac <= 1.0:
                raise BudgetError(f"target.{base}_frac must be in [0, 1], got {frac}")
            absolute = lo + frac * (hi - lo)
        if absolute is None:
            continue
        absolute = _number(f"target.{metric}", absolute)
        if absolute <= 0:
            raise BudgetError(f"target.{metric} must be positive, got {absolute}")
        if absolute < lo * (1 - 1e-12):
            raise BudgetError(
                f"target.{metric}={absolute:.6g} {_UNIT[metric]} is unreachable: the cheapest "
                f"network of the space costs {lo:.6g} {_UNIT[metric]} (the dearest {hi:.6g})"
            )
        if absolute >= hi:
            warnings.warn(
                f"target.{metric}={absolute:.6g} {_UNIT[metric]} is at or above the dearest "
                f"network of the space ({hi:.6g} {_UNIT[metric]}): it does not constrain the search",
                stacklevel=2,
            )
        out[metric] = absolute
    return Targets(**out)


def _number(name: str, value: Any) -> float:
    """``value`` as a finite float, or a BudgetError naming ``name``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise BudgetError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise BudgetError(f"{name} must be a finite number, got {value!r}")
    return x
