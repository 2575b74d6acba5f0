"""Derive a graph supernet's choice within a budget, exactly (the graph form of ``dnas.derive``).

Start from the most likely choice (nearest width and bit indices, argmax kernel, a branch skipped
when skipping is more likely than keeping it). While its exact cost exceeds a target, apply the
one-step downgrade (one width index lower on a group, one bit index lower on a layer's weights or
input, a cheaper kernel, skipping a branch) with the smallest loss of log-preference per unit of
target-normalised cost saved. If the walk gets stuck, the smallest choice if it fits; else the
budget is unreachable. The returned choice's exact cost never exceeds a target.

Costs are any mapping of metrics: ``graph_metrics`` gives BitOps and model size (KiB) exactly, and
latency and energy through a ``dnas.cost.graph.GraphCostTable``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch

from dnas.cost.targets import BudgetError
from dnas.graph.graph import GraphChoice, LayerGraph
from dnas.graph.supernet import GraphRelaxed
from dnas.space import nearest_index

CostFn = Callable[[GraphChoice], Mapping[str, float]]
GRAPH_METRICS = ("latency_ms", "energy_mj", "bitops", "size_kib")
GRAPH_STRATEGIES = ("fill", "argmax")


def graph_metrics(graph: LayerGraph, table=None) -> CostFn:
    """``choice → {"bitops", "size_kib"}`` (exact), with ``latency_ms`` and ``energy_mj`` when a
    ``GraphCostTable`` is given."""

    def cost(choice: GraphChoice) -> dict[str, float]:
        out = {"bitops": float(graph.bitops(choice)), "size_kib": graph.size_kib(choice)}
        if table is not None:
            out.update(table.exact(choice))
        return out

    return cost


@dataclass
class _State:
    """A choice as option indices (the derivation's working form)."""

    widths: dict[str, int]
    kernels: dict[str, int]
    bits: dict[str, tuple[int, int]]
    skipped: set[str] = field(default_factory=set)

    def copy(self) -> _State:
        return _State(dict(self.widths), dict(self.kernels), dict(self.bits), set(self.skipped))

    def choice(self, graph: LayerGraph) -> GraphChoice:
        return graph.choice(
            widths={g: graph.group(g).widths[i] for g, i in self.widths.items()},
            kernels={n: graph.layer(n).kernels[i] for n, i in self.kernels.items()},
            bits={
                n: (graph.layer(n).w_bits[w], graph.layer(n).a_bits[a])
                for n, (w, a) in self.bits.items()
            },
            skipped=self.skipped,
        )


def _value(x: torch.Tensor | None) -> float | None:
    return None if x is None else float(torch.as_tensor(x).detach())


class _Scores:
    """Log-preferences of every option under a relaxed distribution."""

    def __init__(self, graph: LayerGraph, relaxed: GraphRelaxed) -> None:
        self.width = {g: _value(x) for g, x in relaxed.width_index.items()}
        self.bits = {n: (_value(w), _value(a)) for n, (w, a) in relaxed.bit_index.items()}
        self.kernel = {
            n: p.detach().double().clamp_min(1e-30).log().tolist()
            for n, p in relaxed.kernel_probs.items()
        }
        self.keep = {}
        for s, p in relaxed.keep_probs.items():
            keep = float(torch.as_tensor(p).detach().double().clamp(1e-30, 1 - 1e-16))
            self.keep[s] = (math.log(keep), math.log1p(-keep))


def argmax_state(graph: LayerGraph, relaxed: GraphRelaxed) -> _State:
    scores = _Scores(graph, relaxed)
    widths = {}
    for g in graph.groups:
        x = scores.width.get(g.name)
        widths[g.name] = len(g.widths) - 1 if x is None else nearest_index(x, len(g.widths))
    kernels, bits = {}, {}
    for layer in graph.layers:
        lp = scores.kernel.get(layer.name)
        kernels[layer.name] = len(layer.kernels) - 1 if lp is None else lp.index(max(lp))
        xw, xa = scores.bits.get(layer.name, (None, None))
        bits[layer.name] = (
            len(layer.w_bits) - 1 if xw is None else nearest_index(xw, len(layer.w_bits)),
            len(layer.a_bits) - 1 if xa is None else nearest_index(xa, len(layer.a_bits)),
        )
    skipped = {s for s, (keep, skip) in scores.keep.items() if skip > keep}
    return _State(widths, kernels, bits, skipped)


def argmax_choice(graph: LayerGraph, relaxed: GraphRelaxed) -> GraphChoice:
    """The most likely choice: nearest width and bit indices, argmax kernel, skip or keep."""
    return argmax_state(graph, relaxed).choice(graph)


def _moves(graph: LayerGraph, s: _State) -> Iterator[tuple[str, str, object]]:
    removed = {n for b in s.skipped for n in graph.skip(b).layers}
    for g in graph.groups:
        if s.widths[g.name] > 0:
            yield ("widths", g.name, s.widths[g.name] - 1)
    for layer in graph.layers:
        if layer.name in removed:
            continue
        w, a = s.bits[layer.name]
        if w > 0:
            yield ("bits", layer.name, (w - 1, a))
        if a > 0:
            yield ("bits", layer.name, (w, a - 1))
        for k in range(len(layer.kernels)):
            if k != s.kernels[layer.name]:
                yield ("kernels", layer.name, k)
    for skip in graph.skips:
        if skip.name not in s.skipped:
            yield ("skipped", skip.name, True)


def _apply(s: _State, move: tuple[str, str, object]) -> _State:
    kind, where, value = move
    t = s.copy()
    if kind == "skipped":
        t.skipped.add(where)
    else:
        getattr(t, kind)[where] = value
    return t


def _loss(scores: _Scores, s: _State, move: tuple[str, str, object]) -> float:
    """Log-preference lost by a move (>= 0 for a move away from the most likely option)."""
    kind, where, value = move
    if kind == "skipped":
        keep, skip = scores.keep[where]
        return keep - skip
    if kind == "kernels":
        lp = scores.kernel.get(where)
        return 0.0 if lp is None else lp[s.kernels[where]] - lp[value]  # type: ignore[index]
    if kind == "widths":
        x = scores.width.get(where)
        return 0.0 if x is None else abs(x - value) - abs(x - s.widths[where])  # type: ignore[operator]
    x = scores.bits.get(where, (None, None))
    old, new = s.bits[where], value
    return sum(
        0.0 if x[j] is None else abs(x[j] - new[j]) - abs(x[j] - old[j])  # type: ignore[index,operator]
        for j in range(2)
    )


def _upgrades(graph: LayerGraph, s: _State, best: _State, scores: _Scores):
    """Steps back toward the most likely choice ``best`` (undoing downgrades, or rounding an
    ordered index up to the ceiling of its continuous index): what a fill may spend on."""
    for g in graph.groups:
        x = scores.width.get(g.name)
        top = best.widths[g.name] if x is None else max(best.widths[g.name], math.ceil(x - 1e-9))
        if s.widths[g.name] < min(top, len(g.widths) - 1):
            yield ("widths", g.name, s.widths[g.name] + 1)
    removed = {n for b in s.skipped for n in graph.skip(b).layers}
    for layer in graph.layers:
        if layer.name in removed:
            continue
        w, a = s.bits[layer.name]
        xw, xa = scores.bits.get(layer.name, (None, None))
        bw, ba = best.bits[layer.name]
        top_w = bw if xw is None else max(bw, math.ceil(xw - 1e-9))
        top_a = ba if xa is None else max(ba, math.ceil(xa - 1e-9))
        if w < min(top_w, len(layer.w_bits) - 1):
            yield ("bits", layer.name, (w + 1, a))
        if a < min(top_a, len(layer.a_bits) - 1):
            yield ("bits", layer.name, (w, a + 1))
        if s.kernels[layer.name] != best.kernels[layer.name]:
            yield ("kernels", layer.name, best.kernels[layer.name])
    for name in sorted(s.skipped - best.skipped):
        yield ("kept", name, True)


def _fill(
    graph: LayerGraph,
    state: _State,
    current: dict[str, float],
    best: _State,
    scores: _Scores,
    cost: CostFn,
    targets: Mapping[str, float],
) -> tuple[_State, dict[str, float]]:
    """Spend what the budget leaves: repeatedly take the upgrade toward ``best`` that gains the
    most log-preference per unit of (target-normalised) cost and still fits."""
    while True:
        pick = None
        for move in _upgrades(graph, state, best, scores):
            kind, where, _ = move
            if kind == "kept":
                cand = state.copy()
                cand.skipped.discard(where)
                keep, skip = scores.keep[where]
                gain = keep - skip
            else:
                cand = _apply(state, move)
                gain = -_loss(scores, state, move)
            c = dict(cost(cand.choice(graph)))
            if not _fits(c, targets):
                continue
            spent = sum(max(c[m] - current[m], 0.0) / t for m, t in targets.items())
            rank = (gain / spent) if spent > 0 else math.inf
            if pick is None or rank > pick[0]:
                pick = (rank, cand, c)
        if pick is None:
            return state, current
        _, state, current = pick


def _fits(cost: Mapping[str, float], targets: Mapping[str, float]) -> bool:
    return all(cost[m] <= t * (1 + 1e-12) for m, t in targets.items())


def derive_graph(
    graph: LayerGraph,
    relaxed: GraphRelaxed,
    cost: CostFn,
    targets: Mapping[str, float],
    max_steps: int = 10_000,
    strategy: str = "fill",
) -> tuple[GraphChoice, dict[str, float], int]:
    """The derived choice, its exact cost and the number of downgrade steps taken.

    Args:
        graph: the layer graph.
        relaxed: the supernet's distribution (``GraphSuperNet.relaxed()``).
        cost: exact costs of a choice (``graph_metrics``); must return every metric of
            ``targets``.
        targets: ``metric → upper bound`` (``latency_ms``, ``energy_mj``, ``bitops``,
            ``size_kib``); empty: the most likely choice.
        max_steps: at most this many downgrades before falling back to the smallest choice.
        strategy: ``"argmax"``: stop at the first choice that fits; ``"fill"``: then spend what
            the budget leaves on steps back toward the most likely choice (undoing downgrades,
            rounding a width or bit index up to the ceiling of its continuous index), most
            preferred per unit of cost first, as long as every target holds.

    Raises:
        BudgetError: an unknown metric or strategy, or not even the smallest choice meets the
            targets.
    """
    unknown = sorted(set(targets) - set(GRAPH_METRICS))
    if unknown:
        raise BudgetError(f"unknown budget metric(s) {unknown}; allowed: {list(GRAPH_METRICS)}")
    if strategy not in GRAPH_STRATEGIES:
        raise BudgetError(f"derive strategy {strategy!r} is not one of {list(GRAPH_STRATEGIES)}")
    state = argmax_state(graph, relaxed)
    likely = state.copy()
    current = dict(cost(state.choice(graph)))
    steps = 0
    if targets and not _fits(current, targets):
        scores = _Scores(graph, relaxed)
        while not _fits(current, targets) and steps < max_steps:
            best = None
            for move in _moves(graph, state):
                cand = _apply(state, move)
                c = cost(cand.choice(graph))
                over = [m for m, t in targets.items() if current[m] > t]
                saved = sum((current[m] - c[m]) / targets[m] for m in over)
                worse = any(c[m] > t and c[m] > current[m] for m, t in targets.items())
                if saved <= 0 or worse:
                    continue
                ratio = max(_loss(scores, state, move), 0.0) / saved
                if best is None or ratio < best[0]:
                    best = (ratio, cand, dict(c))
            if best is None:
                break
            _, state, current = best
            steps += 1
        if not _fits(current, targets):
            smallest = graph.smallest_choice()
            low = dict(cost(smallest))
            if not _fits(low, targets):
                raise BudgetError(
                    "no choice of "
                    f"{graph.name or 'the network'} meets "
                    + ", ".join(f"{m} <= {t:.6g}" for m, t in targets.items())
                    + ": the smallest costs "
                    + ", ".join(f"{m} {low[m]:.6g}" for m in targets)
                )
            return smallest, low, steps
    if targets and strategy == "fill":
        state, current = _fill(
            graph, state, current, likely, _Scores(graph, relaxed), cost, targets
        )
    return state.choice(graph), current, steps
