"""Expected BitOps and model size of a graph supernet's distribution, differentiable.

Each choice enters as the supernet computes it: a width index θ as the number of channels its
fractional mask keeps, ``c_i + f·(c_{i+1} − c_i)`` (``i = ⌊θ⌋``, ``f = θ − i``); a bit index β as
the fractional bit-width ``b_i + f·(b_{i+1} − b_i)`` (FracBits); a kernel as ``Σ_k p_k·k²``; a
skippable branch's layers weighted by the probability of keeping it. Per layer

    BitOps = keep · H_out·W_out · k² · (C_in/groups) · C_out · b_w · b_a,   size = keep · k² · (C_in/groups) · C_out · b_w,

so at integer indices, one-hot kernels and keep probabilities of 0 or 1 both equal
``LayerGraph.bitops`` and ``LayerGraph.size_bits`` of that choice exactly (a test holds it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dnas.graph.graph import GraphLayer, LayerGraph
from dnas.graph.supernet import GraphRelaxed


def interpolate(values: Sequence[int], index: Tensor | None) -> Tensor:
    """``values`` at a continuous index (0-dim, in ``[0, n − 1]``); the last value for ``None``."""
    if index is None or len(values) == 1:
        return torch.tensor(float(values[-1] if index is None else values[0]))
    lo = index.detach().floor().clamp(0, len(values) - 2)
    f = index - lo
    i = int(lo)
    return values[i] + f * (values[i + 1] - values[i])


def _layer_terms(
    graph: LayerGraph, layer: GraphLayer, relaxed: GraphRelaxed
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(keep, weights, w_bits, a_bits)`` of one layer, expected."""

    def width(group: str) -> Tensor:
        return interpolate(graph.group(group).widths, relaxed.width_index.get(group))

    out = width(layer.out_group)
    if layer.depthwise:
        per_out = torch.tensor(1.0)
    else:
        per_out = layer.in_factor * torch.stack([width(g) for g in layer.in_groups]).sum()
    probs = relaxed.kernel_probs.get(layer.name)
    k2 = (
        torch.tensor(float(layer.kernels[-1] ** 2))
        if probs is None
        else (probs * torch.tensor([float(k * k) for k in layer.kernels])).sum()
    )
    keep = torch.tensor(1.0)
    for skip in graph.skips:
        if layer.name in skip.layers:
            keep = keep * relaxed.keep_probs[skip.name]
    bw, ba = relaxed.bit_index.get(layer.name, (None, None))
    return keep, k2 * per_out * out, interpolate(layer.w_bits, bw), interpolate(layer.a_bits, ba)


def expected_bitops(graph: LayerGraph, relaxed: GraphRelaxed) -> Tensor:
    """Σ over layers of ``keep · MACs · b_w · b_a`` at the relaxed choices (0-dim)."""
    total = torch.zeros(())
    for layer in graph.layers:
        keep, weights, bw, ba = _layer_terms(graph, layer, relaxed)
        total = total + keep * layer.output_h * layer.output_w * weights * bw * ba
    return total


def expected_size_bits(graph: LayerGraph, relaxed: GraphRelaxed) -> Tensor:
    """Σ over layers of ``keep · weights · b_w`` at the relaxed choices (0-dim)."""
    total = torch.zeros(())
    for layer in graph.layers:
        keep, weights, bw, _ = _layer_terms(graph, layer, relaxed)
        total = total + keep * weights * bw
    return total
