"""Deriving a discrete architecture whose exact table cost meets the budget (docs/DESIGN.md, "Derive").

Start from the most likely architecture (argmax kernel, nearest width and bit indices). While its
exact cost exceeds a target, apply the one-step downgrade (a cheaper kernel or skip, one width index
lower, one bit index lower on one conv) with the smallest loss of architecture log-probability per
unit of (target-normalised) cost saved. If the greedy walk gets stuck, fall back to a network that
fits (``dnas.cost.targets.fitting_state``); if there is none, the budget is unreachable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from dnas.cost.exact import ExactCost
from dnas.cost.table import METRICS, CostTable
from dnas.cost.targets import Targets, fitting_state
from dnas.errors import DnasError
from dnas.space import Architecture, ArchState, LayerKey, nearest_index
from dnas.space.layers import BLOCK_ROLES, FIXED_ROLES


def _moves(space, s: ArchState, costs: ExactCost):
    """Every one-step downgrade of s: (kind, block or key, new value)."""
    for b in space.blocks:
        i = b.index
        if costs.skipped(s, i):
            continue
        for k in range(costs.n_kernels[i]):
            if k != s.kernel[i]:
                yield ("kernel", i, k)
        if s.width[i] > 0:
            yield ("width", i, s.width[i] - 1)
    for key, (wi, ai) in s.bits.items():
        if key.block >= 0 and costs.skipped(s, key.block):
            continue
        if wi > 0:
            yield ("bits", key, (wi - 1, ai))
        if ai > 0:
            yield ("bits", key, (wi, ai - 1))


def _apply(s: ArchState, move) -> ArchState:
    kind, where, value = move
    t = s.copy()
    getattr(t, kind)[where] = value
    return t


def _scalar(x) -> float:
    return float(torch.as_tensor(x).detach())


DEPTH_RULES = ("joint", "marginal")


def kernel_scores(space, relaxed, depth: str = "joint") -> dict[int, torch.Tensor]:
    """Log-preference of every kernel choice of every block (``"skip"`` last where offered).

    ``depth="joint"``: the log probabilities, so skip competes with each kernel on its own, and
    a block whose kernels share the mass it keeps (p = 0.44 for skip against 0.35, 0.10, 0.11)
    is skipped although keeping it is more likely (0.56). ``"marginal"``: skip scores
    log p(skip), the kernels log p(keep) + log(p_k / max_j p_j): the depth is decided on the
    marginal p(keep) against p(skip), the kernel among the kept ones (the most likely costs
    nothing more, the others their log-ratio to it). Without a skip choice both are the same
    up to a constant.
    """
    if depth not in DEPTH_RULES:
        raise DnasError(f"derive depth rule {depth!r} is not one of {list(DEPTH_RULES)}")
    out = {}
    for b in space.blocks:
        p = relaxed.kernel_probs[b.index].detach().double().clamp_min(1e-30)
        if depth == "marginal" and "skip" in space.kernel_choices(b.index) and len(p) > 1:
            real, skip = p[:-1], p[-1:]
            keep = (1.0 - skip).clamp_min(1e-30)
            out[b.index] = torch.cat([keep.log() + (real / real.max()).log(), skip.log()])
        else:
            out[b.index] = p.log()
    return out


def _scores(space, relaxed, depth: str = "joint") -> dict:
    """Log-preferences of every choice from the relaxed distribution.

    Kernels: ``kernel_scores``. Ordered choices (width, bits) at continuous index x: −|x − i|,
    so moving one index away from x costs the extra distance.
    """
    out = {"kernel": {}, "width": {}, "bits": {}}
    kernels = kernel_scores(space, relaxed, depth)
    for b in space.blocks:
        out["kernel"][b.index] = kernels[b.index].tolist()
        out["width"][b.index] = _scalar(relaxed.width_index[b.index])
    for key, (bw, ba) in relaxed.bit_index.items():
        out["bits"][key] = (_scalar(bw), _scalar(ba))
    return out


def _logp_loss(scores, s: ArchState, t: ArchState, move) -> float:
    kind, where, value = move
    if kind == "kernel":
        lp = scores["kernel"][where]
        return lp[s.kernel[where]] - lp[value]
    if kind == "width":
        x = scores["width"][where]
        return abs(x - value) - abs(x - s.width[where])
    x = scores["bits"][where]
    old, new = s.bits[where], value
    return sum(abs(x[j] - new[j]) - abs(x[j] - old[j]) for j in range(2))


def argmax_state(space, relaxed, depth: str = "joint") -> ArchState:
    """Most likely discrete architecture: best kernel (``kernel_scores``), nearest width and bit
    indices."""
    kernel, width, bits = {}, {}, {}
    kernels = kernel_scores(space, relaxed, depth)
    for b in space.blocks:
        kernel[b.index] = int(kernels[b.index].argmax())
        width[b.index] = nearest_index(
            float(torch.as_tensor(relaxed.width_index[b.index]).detach()), len(b.widths)
        )
    for cl in space.costed_layers():
        bw, ba = relaxed.bit_index[cl.key]
        bits[cl.key] = (
            nearest_index(float(torch.as_tensor(bw).detach()), len(cl.w_bits)),
            nearest_index(float(torch.as_tensor(ba).detach()), len(cl.a_bits)),
        )
    return ArchState(kernel, width, bits)


def _fill_moves(space, s: ArchState, scores: dict, costs: ExactCost, max_kernel_ratio: float):
    """Upgrades a budget fill may make, with their log-preference loss.

    Ordered choices (width, bits) may go from their nearest index up to the ceiling of their
    continuous index (loss ``1 − 2·frac``); a skipped block may take its most likely kernel when
    that kernel is at least ``1 / max_kernel_ratio`` as likely as skip.
    """
    for b in space.blocks:
        i = b.index
        if costs.skipped(s, i):
            lp = scores["kernel"][i]
            k = max(range(len(lp) - 1), key=lambda j: lp[j])
            loss = lp[s.kernel[i]] - lp[k]
            if loss <= math.log(max_kernel_ratio):
                yield ("kernel", i, k), loss
            continue
        x = scores["width"][i]
        if s.width[i] < x and s.width[i] + 1 < len(b.widths):
            yield ("width", i, s.width[i] + 1), abs(x - s.width[i] - 1) - abs(x - s.width[i])
    for key, (wi, ai) in s.bits.items():
        if key.block >= 0 and costs.skipped(s, key.block):
            continue
        xw, xa = scores["bits"][key]
        if wi < xw:
            yield ("bits", key, (wi + 1, ai)), abs(xw - wi - 1) - abs(xw - wi)
        if ai < xa:
            yield ("bits", key, (wi, ai + 1)), abs(xa - ai - 1) - abs(xa - ai)


def fill_budget(
    space,
    table: CostTable,
    relaxed,
    targets: Targets,
    state: ArchState,
    max_kernel_ratio: float = 4.0,
    depth: str = "joint",
) -> tuple[ArchState, dict[str, float], int]:
    """Round up where the budget allows: the nearest architecture spends less than the expected
    cost the search aimed at the target (rounding θ = 2.4 down, or an argmax ``skip`` at p = 0.4,
    drops cost the distribution pays for). Greedily apply the upgrade with the smallest loss of
    log-preference (see ``_fill_moves``) whose result still fits, until none does.

    Returns:
        The filled state, its exact cost and the number of upgrades.
    """
    costs = ExactCost(space, table)
    scores = _scores(space, relaxed, depth)
    cost, steps = costs.total(state), 0
    while True:
        best = None
        for move, loss in _fill_moves(space, state, scores, costs, max_kernel_ratio):
            cand = _apply(state, move)
            c = costs.total(cand)
            if targets.fits(c) and (best is None or loss < best[0]):
                best = (loss, cand, c)
        if best is None:
            return state, cost, steps
        _, state, cost = best
        steps += 1


_TIE = 1e-9  # a tie in −|x − i| goes to the higher index, as in ``nearest_index``


def _bit_scores(x_w: float, x_a: float, n_w: int, n_a: int) -> torch.Tensor:
    """Log-preference −|x − i| of every (w_bits, a_bits) index pair, ties going up (as
    ``nearest_index`` rounds half up)."""
    iw = torch.arange(n_w, dtype=torch.float64)
    ia = torch.arange(n_a, dtype=torch.float64)
    sw = -(x_w - iw).abs() + _TIE * iw
    sa = -(x_a - ia).abs() + _TIE * ia
    return sw[:, None] + sa[None, :]


class _Lagrangian:
    """The architecture maximising Σ log-preference − λ · Σ_m cost_m / target_m, for any λ.

    Costs are additive over layers, a block's layers interact only through its kernel and width,
    and the bits of each layer are independent given those; so for a given λ the maximiser is
    exact and takes a few tensor reductions per block. λ > 0 trades preference for savings (the
    budget is exceeded), λ < 0 buys cost the distribution is less sure about (budget left over).
    """

    def __init__(
        self, space, table: CostTable, relaxed, active: Mapping[str, float], depth: str = "joint"
    ) -> None:
        self.space = space
        layers = {cl.key: cl for cl in space.costed_layers()}
        self.layers = layers
        self.ncost = {
            k: sum(getattr(table.entries[k], m).double() / t for m, t in active.items())
            for k in layers
        }
        self.bits = {}
        for k, cl in layers.items():
            bw, ba = relaxed.bit_index[k]
            self.bits[k] = _bit_scores(_scalar(bw), _scalar(ba), len(cl.w_bits), len(cl.a_bits))
        self.kernel, self.width = kernel_scores(space, relaxed, depth), {}
        for b in space.blocks:
            x = _scalar(relaxed.width_index[b.index])
            iw = torch.arange(len(b.widths), dtype=torch.float64)
            self.width[b.index] = -(x - iw).abs() + _TIE * iw

    def state(self, lam: float) -> ArchState:
        kernel, width, bits = {}, {}, {}
        for role in FIXED_ROLES:
            key = LayerKey(role)
            v = self.bits[key] - lam * self.ncost[key][0, 0]
            bits[key] = divmod(int(v.argmax()), v.shape[1])
        for b in self.space.blocks:
            i = b.index
            keys = [LayerKey(r, i) for r in BLOCK_ROLES if LayerKey(r, i) in self.layers]
            choices = self.space.kernel_choices(i)
            has_skip = "skip" in choices
            n_real = len(choices) - int(has_skip)
            total = self.width[i][None, :].expand(n_real, -1).clone()
            best = {}
            for key in keys:
                v = self.bits[key] - lam * self.ncost[key]  # [K or 1, W, WB, AB]
                mx, idx = v.flatten(2).max(dim=2)
                best[key] = idx
                total = total + mx
            total = total + self.kernel[i][:n_real, None]
            flat = int(total.argmax())
            k, wi = divmod(flat, total.shape[1])
            free = {key: int(self.bits[key].argmax()) for key in keys}  # skipped: nearest bits
            if has_skip:
                # a skipped block costs nothing: its width and bits sit at their best score
                skip_value = (
                    self.kernel[i][-1]
                    + self.width[i].max()
                    + sum(self.bits[key].max() for key in keys)
                )
                if float(skip_value) > float(total[k, wi]):
                    kernel[i] = len(choices) - 1
                    width[i] = int(self.width[i].argmax())
                    for key in keys:
                        bits[key] = divmod(free[key], self.bits[key].shape[1])
                    continue
            kernel[i], width[i] = k, wi
            for key in keys:
                kk = k if key.role == "dw" else 0
                bits[key] = divmod(int(best[key][kk, wi]), self.bits[key].shape[1])
        return ArchState(kernel, width, bits)


def _upgrades(space, s: ArchState, costs: ExactCost):
    """Every one-step change of s that may add cost: another kernel (or un-skipping a block), one
    width index up, one bit index up on one conv."""
    for b in space.blocks:
        i = b.index
        for k in range(costs.n_kernels[i]):
            if k != s.kernel[i]:
                yield ("kernel", i, k)
        if not costs.skipped(s, i) and s.width[i] + 1 < len(b.widths):
            yield ("width", i, s.width[i] + 1)
    layers = {cl.key: cl for cl in space.costed_layers()}
    for key, (wi, ai) in s.bits.items():
        if key.block >= 0 and costs.skipped(s, key.block):
            continue
        if wi + 1 < len(layers[key].w_bits):
            yield ("bits", key, (wi + 1, ai))
        if ai + 1 < len(layers[key].a_bits):
            yield ("bits", key, (wi, ai + 1))


def _state_score(lag: _Lagrangian, s: ArchState, costs: ExactCost) -> float:
    """Σ log-preference of s; a skipped block's width and bits are moot and score their best."""
    total = 0.0
    for b in lag.space.blocks:
        i = b.index
        total += float(lag.kernel[i][s.kernel[i]])
        skipped = costs.skipped(s, i)
        total += float(lag.width[i].max() if skipped else lag.width[i][s.width[i]])
    for key, (wi, ai) in s.bits.items():
        moot = key.block >= 0 and costs.skipped(s, key.block)
        total += float(lag.bits[key].max() if moot else lag.bits[key][wi, ai])
    return total


def budget_state(
    space, table: CostTable, relaxed, targets: Targets, iters: int = 60, depth: str = "joint"
) -> tuple[ArchState, dict[str, float]]:
    """The most preferred architecture that spends the budget (``derive="budget"``).

    1. Bisect λ in ``max Σ log-preference − λ · Σ_m cost_m / target_m`` for the smallest λ whose
       maximiser fits: λ > 0 when the argmax is over budget (the repair), λ < 0 when it leaves
       budget unused (the distribution's next-preferred, dearer choices are bought).
    2. Polish: while some one-step upgrade fits, apply the one losing the least preference per
       unit of normalised cost it adds.

    Raises:
        BudgetError: not even the cheapest architecture meets the targets.
    """
    active = targets.active()
    costs = ExactCost(space, table)
    lag = _Lagrangian(space, table, relaxed, active, depth)

    def fits(lam: float):
        st = lag.state(lam)
        c = costs.total(st)
        return targets.fits(c), st, c

    ok, state, cost = fits(0.0)
    if ok:
        lo, hi = -1.0, 0.0
        while fits(lo)[0] and lo > -1e6:
            hi, lo = lo, 2 * lo
        if lo <= -1e6:  # the whole space fits: its dearest most preferred network
            _, state, cost = fits(lo)
            lo = hi = None
    else:
        lo, hi = 0.0, 1.0
        while not fits(hi)[0] and hi < 1e6:
            lo, hi = hi, 2 * hi
        if hi >= 1e6:
            state, cost = fitting_state(targets, space, table)
            lo = hi = None
    if lo is not None:
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            if fits(mid)[0]:
                hi = mid
            else:
                lo = mid
        _, state, cost = fits(hi)

    def norm(c):
        return sum(c[m] / t for m, t in active.items())

    score = _state_score(lag, state, costs)
    while True:
        best = None
        for move in _upgrades(space, state, costs):
            cand = _apply(state, move)
            c = costs.total(cand)
            gain = norm(c) - norm(cost)
            if gain <= 0 or not targets.fits(c):
                continue
            loss = max(score - _state_score(lag, cand, costs), 0.0)
            key = (loss / gain, -gain)
            if best is None or key < best[0]:
                best = (key, cand, c)
        if best is None:
            return state, cost
        _, state, cost = best
        score = _state_score(lag, state, costs)


DERIVE_STRATEGIES = ("argmax", "fill", "budget")


def derive_within_budget(
    space,
    table: CostTable,
    relaxed,
    targets: Targets,
    max_steps: int = 10_000,
    fill: bool = False,
    strategy: str | None = None,
    depth: str = "joint",
) -> tuple[Architecture, dict[str, float], int]:
    """The derived architecture, its exact cost and the number of repair steps taken.

    Args:
        space: the search space.
        table: its cost table.
        relaxed: the supernet's relaxed distribution (``kernel_probs``, ``width_index``,
            ``bit_index``), e.g. ``SuperNet.relaxed()``.
        targets: budget; the returned architecture's exact cost never exceeds it.
        max_steps: at most this many repair steps before falling back to the cheapest network.
        fill: after meeting the budget, round choices up where it still fits (``fill_budget``);
            the same as ``strategy="fill"``.
        strategy: ``"argmax"`` (the most likely network, repaired greedily down to the budget),
            ``"fill"`` (then rounded up where the budget allows) or ``"budget"`` (the most
            preferred network that spends the budget, ``budget_state``).
        depth: how skip competes with the kernels (``kernel_scores``): ``"joint"`` or
            ``"marginal"``.

    Raises:
        BudgetError: not even the cheapest architecture meets the targets.
    """
    strategy = strategy or ("fill" if fill else "argmax")
    if strategy not in DERIVE_STRATEGIES:
        raise DnasError(f"unknown derive strategy {strategy!r}; choose from {DERIVE_STRATEGIES}")
    active = targets.active()
    costs = ExactCost(space, table)
    state = argmax_state(space, relaxed, depth)
    cost = costs.total(state)
    steps = 0
    if strategy == "budget" and active:
        state, cost = budget_state(space, table, relaxed, targets, depth=depth)
    elif active and not targets.fits(cost):
        scores = _scores(space, relaxed, depth)
        while not targets.fits(cost) and steps < max_steps:
            best = None
            for move in _moves(space, state, costs):
                cand = _apply(state, move)
                c = costs.total(cand)
                # Normalised saving on the targets that are violated now.
                saved = sum((cost[m] - c[m]) / t for m, t in active.items() if cost[m] > t)
                worse = any(c[m] > t and c[m] > cost[m] for m, t in active.items())
                if saved <= 0 or worse:
                    continue
                ratio = max(_logp_loss(scores, state, cand, move), 0.0) / saved
                if best is None or ratio < best[0]:
                    best = (ratio, cand, c)
            if best is None:
                break
            _, state, cost = best
            steps += 1
        if not targets.fits(cost):
            state, cost = fitting_state(targets, space, table)
    if strategy == "fill" and active:
        state, cost, _ = fill_budget(space, table, relaxed, targets, state, depth=depth)
    arch = state.to_arch(space)
    metrics_out = {m: cost[m] for m in METRICS}
    for m, t in active.items():
        metrics_out[f"target_{m}"] = t
    assert not active or (targets.fits(cost) and math.isfinite(sum(cost.values())))
    return arch.with_metrics(**metrics_out), cost, steps
