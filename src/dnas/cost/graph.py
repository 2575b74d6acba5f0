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
