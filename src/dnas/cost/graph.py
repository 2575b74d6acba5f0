"""BitFusion cost of a layer graph's choice (``dnas.graph``): the same layer model and schedules as
the MobileNetV2 tables (``dnas.cost.layer.LayerShape`` through ``dnas.cost.backend.evaluate``), for
any network the graph describes, a converted ``nn.Module`` included.

Example:
    >>> import torch
    >>> from dnas.cost.graph import graph_cost
    >>> from dnas.graph.convert import convert
    >>> from dnas.networks import resnet20
    >>> graph = convert(resnet20(), torch.randn(1, 3, 32, 32), w_bits=(4, 8), a_bits=(4, 8))
    >>> rows, total = graph_cost(graph, graph.largest_choice())
    >>> total["latency_ms"] > 0 and total["bitops"] == graph.bitops(graph.largest_choice())
    True
"""

from __future__ import annotations

from typing import Any

from dnas.cost.hardware import BitFusionConfig
from dnas.cost.layer import LayerShape
from dnas.errors import DnasError


def graph_layer_shapes(graph, choice, batch: int = 1) -> list[tuple[str, LayerShape]]:
    """``(layer name, LayerShape)`` of every layer ``choice`` runs, in execution order.

    Raises:
        DnasError: a layer the BitFusion model cannot take as it is (a non-square output; a
            grouped conv other than depthwise is refused by the graph already).
    """
    return [(r.name, _layer_shape(r, batch)) for r in graph.layer_shapes(choice)]


def _layer_shape(r, batch: int) -> LayerShape:
    """A resolved graph layer (``dnas.graph.ResolvedLayer``) as the BitFusion model sees it."""
    if r.output_h != r.output_w:
        raise DnasError(
            f"layer {r.name}: output {r.output_h}x{r.output_w} is not square; the BitFusion "
            "model takes square feature maps"
        )
    return LayerShape(
        in_channels=r.in_channels,
        out_channels=r.out_channels,
        kernel_size=r.kernel,
        stride=r.stride,
        output_h=r.output_h,
        batch=batch,
        w_bits=r.w_bits,
        a_bits=r.a_bits,
        groups=r.groups,
        im2col=r.im2col,
    )


def graph_cost(
    graph, choice, hw: BitFusionConfig | None = None, backend: str = "auto"
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-layer BitFusion cost of ``choice`` and the totals (latency, energy, MACs, BitOps, size).

    Returns:
        ``(rows, total)``: one row per layer run (name, shape, bits, cycles, memory stalls,
        ``latency_ms``, ``energy_mj``, ``macs``, ``bitops``, ``size_bits``), and the sums
        (latency and energy added in execution order; MACs, BitOps and size exact integers
        equal to ``graph.macs/bitops/size_bits``).

    Raises:
        DnasError: a bit-width the hardware does not run, or a layer no tiling of its buffers
            fits.
    """
    from dnas.cost.backend import cost_named_layers
    from dnas.cost.hardware import load_hardware

    hw = hw or load_hardware("bitfusion")
    resolved = graph.layer_shapes(choice)  # validated and resolved once
    named = [(r.name, _layer_shape(r, 1)) for r in resolved]
    cols = cost_named_layers(named, hw, backend)
    latency, energy = cols["latency_ms"], cols["energy_mj"]
    cycles, stall = cols["cycles"], cols["mem_stall_cycles"]
    rows = []
    for i, ((name, s), r) in enumerate(zip(named, resolved)):
        rows.append(
            {
                "layer": name,
                "in_channels": s.in_channels,
                "out_channels": s.out_channels,
                "kernel_size": s.kernel_size,
                "stride": s.stride,
                "output_h": s.output_h,
                "groups": s.groups,
                "w_bits": s.w_bits,
                "a_bits": s.a_bits,
                "cycles": cycles[i],
                "mem_stall_cycles": stall[i],
                "latency_ms": latency[i],
                "energy_mj": energy[i],
                "macs": r.macs,
                "bitops": r.bitops,
                "size_bits": r.size_bits,
            }
        )
    total: dict[str, Any] = {"layer": "total", "latency_ms": 0.0, "energy_mj": 0.0}
    for row in rows:
        total["latency_ms"] += row["latency_ms"]
        total["energy_mj"] += row["energy_mj"]
    for k in ("cycles", "mem_stall_cycles", "macs", "bitops", "size_bits"):
        total[k] = sum(row[k] for row in rows)
    return rows, total


class GraphCostTable:
    """The BitFusion cost of every option of every layer of a layer graph, as tensors.

    For each layer, one tensor per metric (``latency_ms``, ``energy_mj``) over the axes
    ``(width index of each distinct group it reads or writes, in order of first use; kernel
    index; w_bits index; a_bits index)``, built in one batch through the same layer model and
    backends as the MobileNetV2 tables. A ResNet-20 with three widths per group and bits
    (2, 4, 8) has 81 entries per layer.

    ``exact(choice)`` sums the entries of the layers a choice runs (equal to ``graph_cost``'s
    totals: a test holds it); ``expected(relaxed)`` interpolates them multilinearly at the
    continuous width and bit indices (``dnas.graph.supernet.GraphRelaxed``), takes the
    expectation over kernel probabilities and weights a skippable branch's layers by the
    probability of keeping it. At integer indices, one-hot kernels and keep probabilities of 0
    or 1 the expected cost is the exact cost of that choice.

    Args:
        graph: the layer graph (``dnas.graph.LayerGraph``).
        hw: the hardware (default: the published BitFusion).
        backend: ``auto``, ``torch`` or ``triton``.

    Raises:
        DnasError: a bit-width the hardware does not run, a non-square output, or a layer no
            tiling fits (naming the layer).
    """

    METRICS = ("latency_ms", "energy_mj")

    def __init__(self, graph, hw: BitFusionConfig | None = None, backend: str = "auto") -> None:
        import itertools

        import torch

        from dnas.cost.backend import cost_named_layers
        from dnas.cost.hardware import load_hardware
        from dnas.graph import ResolvedLayer

        self.graph = graph
        self.hw = hw or load_hardware("bitfusion")
        self.axes: dict[str, tuple[str, ...]] = {}
        named: list[tuple[str, LayerShape]] = []
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in graph.layers:
            groups = tuple(dict.fromkeys((*layer.in_groups, layer.out_group)))
            self.axes[layer.name] = groups
            options = [graph.group(g).widths for g in groups]
            options += [layer.kernels, layer.w_bits, layer.a_bits]
            shapes[layer.name] = tuple(len(o) for o in options)
            for combo in itertools.product(*options):
                width = dict(zip(groups, combo))
                k, w_bits, a_bits = combo[len(groups) :]
                out = width[layer.out_group]
                r = ResolvedLayer(
                    name=layer.name,
                    in_channels=layer.in_factor * sum(width[g] for g in layer.in_groups),
                    out_channels=out,
                    kernel=k,
                    stride=layer.stride,
                    groups=out if layer.depthwise else 1,
                    output_h=layer.output_h,
                    output_w=layer.output_w,
                    w_bits=w_bits,
                    a_bits=a_bits,
                    im2col=layer.im2col,
                )
                named.append((layer.name, _layer_shape(r, 1)))
        cols = cost_named_layers(named, self.hw, backend)
        self.tables: dict[str, dict[str, torch.Tensor]] = {}
        start = 0
        for layer in graph.layers:
            shape = shapes[layer.name]
            n = 1
            for s in shape:
                n *= s
            self.tables[layer.name] = {
                m: torch.tensor(cols[m][start : start + n], dtype=torch.float64).view(shape)
                for m in self.METRICS
            }
            start += n

    def _index(self, layer, choice) -> tuple[int, ...]:
        graph = self.graph
        idx = [graph.group(g).widths.index(choice.widths[g]) for g in self.axes[layer.name]]
        w, a = choice.bits[layer.name]
        idx += [layer.kernels.index(choice.kernels[layer.name])]
        idx += [layer.w_bits.index(w), layer.a_bits.index(a)]
        return tuple(idx)

    def exact(self, choice) -> dict[str, float]:
        """Latency and energy of ``choice`` (the layers it runs, summed in execution order)."""
        self.graph.validate_choice(choice)
        removed = self.graph.skipped_layers(choice)
        total = dict.fromkeys(self.METRICS, 0.0)
        for layer in self.graph.layers:
            if layer.name in removed:
                continue
            idx = self._index(layer, choice)
            for m in self.METRICS:
                total[m] += float(self.tables[layer.name][m][idx])
        return total

    def expected(self, relaxed) -> dict[str, Any]:
        """Expected latency and energy (0-dim tensors) of a relaxed distribution."""
        import torch

        out = {m: torch.zeros((), dtype=torch.float64) for m in self.METRICS}
        for layer in self.graph.layers:
            keep = torch.ones((), dtype=torch.float64)
            for skip in self.graph.skips:
                if layer.name in skip.layers:
                    keep = keep * relaxed.keep_probs[skip.name].double()
            steps = [relaxed.width_index.get(g) for g in self.axes[layer.name]]
            probs = relaxed.kernel_probs.get(layer.name)
            bw, ba = relaxed.bit_index.get(layer.name, (None, None))
            for m in self.METRICS:
                t = self.tables[layer.name][m]
                for x in steps:
                    t = _interpolate_leading(t, x)
                t = (probs.double().view(-1, 1, 1) * t).sum(0) if probs is not None else t[-1]
                t = _interpolate_leading(_interpolate_leading(t, bw), ba)
                out[m] = out[m] + keep * t
        return out

    def extremes(self) -> dict[str, tuple[float, float]]:
        """``metric → (cost of the smallest choice, cost of the largest)``."""
        lo, hi = self.exact(self.graph.smallest_choice()), self.exact(self.graph.largest_choice())
        return {m: (lo[m], hi[m]) for m in self.METRICS}


def _interpolate_leading(t, x):
    """``t`` at continuous index ``x`` along its first axis (the last entry for ``x`` None when
    the axis has one entry or ``x`` is None: a fixed choice is its only or largest option)."""
    n = t.shape[0]
    if n == 1:
        return t[0]
    if x is None:
        return t[-1]
    lo = x.detach().floor().clamp(0, n - 2)
    f = (x - lo).double()
    i = int(lo)
    return (1 - f) * t[i] + f * t[i + 1]
