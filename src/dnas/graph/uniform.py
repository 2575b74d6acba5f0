"""The hand-designed baseline for a converted network: one bit-width everywhere, the widest that fits.

The graph form of ``dnas.evolve.uniform``. A candidate is, for a bit level ``b``:

- every layer at ``b`` bits for weights and input activations (a layer that does not offer ``b``,
  e.g. one kept at 8 bits by ``layer_bits``, at its largest choice);
- every depthwise conv with kernel choices at ``kernel`` when it offers it, else its smallest;
- no residual branch skipped;
- every channel group's width at the same relative position ``r`` of its choices (index
  ``floor(r·(n−1))`` of its ``n`` widths), ``r`` as large as still fits every target by exact
  cost, found by trying each position where some group's width changes, widest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dnas.evolve.uniform import UniformError, width_index
from dnas.graph.derive import CostFn
from dnas.graph.graph import GraphChoice, LayerGraph


@dataclass(frozen=True)
class GraphUniformCandidate:
    """One uniform choice at its widest fitting width: its bits, width position and exact cost."""

    bits: int
    position: float
    choice: GraphChoice
    cost: dict[str, float]

    @property
    def name(self) -> str:
        return f"b{self.bits}"


def uniform_choice(
    graph: LayerGraph, bits: int, position: float, kernel: int | None = None
) -> GraphChoice:
    """The uniform choice of ``bits`` at width position ``position`` (module docstring).

    Raises:
        UniformError: no layer offers ``bits``.
    """
    if not any(bits in layer.w_bits and bits in layer.a_bits for layer in graph.layers):
        raise UniformError(f"no layer of {graph.name or 'the network'} offers {bits} bits")
    chosen = {}
    for layer in graph.layers:
        w = bits if bits in layer.w_bits else layer.w_bits[-1]
        a = bits if bits in layer.a_bits else layer.a_bits[-1]
        chosen[layer.name] = (w, a)
    return graph.choice(
        widths={g.name: g.widths[width_index(position, len(g.widths))] for g in graph.groups},
        kernels={
            layer.name: kernel if kernel in layer.kernels else layer.kernels[0]
            for layer in graph.layers
        },
        bits=chosen,
    )


def width_positions(graph: LayerGraph) -> list[float]:
    """Every relative position at which some group's width index changes, ascending."""
    found = {0.0, 1.0}
    for g in graph.groups:
        n = len(g.widths)
        if n > 1:
            found.update(i / (n - 1) for i in range(1, n))
    return sorted(found)


def widest_uniform(
    graph: LayerGraph,
    cost: CostFn,
    targets: Mapping[str, float],
    bits: int,
    kernel: int | None = None,
) -> GraphUniformCandidate | None:
    """The uniform choice of ``bits`` at the widest position within ``targets``, or None."""
    for r in reversed(width_positions(graph)):
        choice = uniform_choice(graph, bits, r, kernel)
        c = dict(cost(choice))
        if all(c[m] <= t * (1 + 1e-12) for m, t in targets.items()):
            return GraphUniformCandidate(bits, r, choice, c)
    return None


def uniform_candidates(
    graph: LayerGraph,
    cost: CostFn,
    targets: Mapping[str, float],
    levels: Iterable[int] | None = None,
    kernel: int | None = None,
) -> tuple[list[GraphUniformCandidate], list[str]]:
    """Every uniform candidate within ``targets`` and the names of those that do not fit.

    Args:
        levels: the bit levels; None: every bit-width some layer offers.
    """
    if levels is None:
        levels = sorted({b for layer in graph.layers for b in layer.w_bits})
    found, unfit = [], []
    for b in sorted(set(levels)):
        c = widest_uniform(graph, cost, targets, b, kernel)
        if c is None:
            unfit.append(f"b{b}")
        else:
            found.append(c)
    return found, unfit
