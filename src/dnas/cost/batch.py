"""The tensor interface shared by the cost backends: layers in, integer counters and schedule out.

Every backend (the vectorized PyTorch reference and the Triton kernel) maps a ``[n, 10]`` int64 tensor
of layer parameters to integer counters, the chosen tile sizes and the chosen loop order. Energies and
latencies are then derived from the integers by one function, so backends agree to the bit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dnas.cost.hardware import BitFusionConfig
from dnas.cost.layer import LayerShape
from dnas.cost.loop_order import DENSE_LOOPS, DEPTHWISE_LOOPS, reference_loop_orders

# Columns of the int64 parameter tensor handed to a backend.
PARAM_COLUMNS: tuple[str, ...] = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "output_h",
    "batch",
    "w_bits",
    "a_bits",
    "depthwise",  # 1 for groups == in == out channels, else 0
    "im2col",  # 1 for the network's first layer (dense only)
)

# Columns of the int64 counter tensor a backend returns (-1 in every column: no tiling fits).
COUNTER_COLUMNS: tuple[str, ...] = (
    "cycles",
    "compute_cycles",
    "mem_stall_cycles",
    "dram_read_bits",
    "dram_write_bits",
    "wbuf_read_bits",
    "wbuf_write_bits",
    "ibuf_read_bits",
    "ibuf_write_bits",
    "obuf_read_bits",
    "obuf_write_bits",
)

# Columns of the chosen tile sizes: batch, output rows (= columns), input channels (depthwise:
# channels), output channels (depthwise: channels again).
TILE_COLUMNS: tuple[str, ...] = ("b", "o", "ic", "oc")


def layers_to_params(layers: Sequence[LayerShape]) -> torch.Tensor:
    """Stack layer shapes into the ``[n, 10]`` int64 parameter tensor (PARAM_COLUMNS)."""
    rows = [
        (
            l.in_channels,
            l.out_channels,
            l.kernel_size,
            l.stride,
            l.output_h,
            l.batch,
            l.w_bits,
            l.a_bits,
            int(l.depthwise),
            int(l.im2col),
        )
        for l in layers
    ]
    return torch.tensor(rows, dtype=torch.int64).reshape(len(rows), len(PARAM_COLUMNS))


def tiling_levels(params: torch.Tensor, hw: BitFusionConfig) -> torch.Tensor:
    """How many tile sizes each layer tries per tiled dimension (docs/BITFUSION.md step 2).

    levels(X) = ⌈log2 X⌉ + 1 for b (batch), o (output rows), ic (depthwise: c), and for oc over
    ⌈OC/M⌉ (im2col: over OC); a depthwise layer has one oc level (it has no oc loop).

    Args:
        params: ``[n, 10]`` int64 layer parameters (PARAM_COLUMNS).
        hw: the hardware (its M, ``cols_m``).

    Returns:
        ``[n, 4]`` int64 levels of (b, o, ic, oc); a layer has their product of tilings.
    """
    col = {name: params[:, i] for i, name in enumerate(PARAM_COLUMNS)}
    oc = col["out_channels"]
    oc_levels = torch.where(col["im2col"] != 0, _levels(oc), _levels(-(-oc // hw.cols_m)))
    oc_levels = torch.where(col["depthwise"] != 0, torch.ones_like(oc), oc_levels)
    return torch.stack(
        [_levels(col["batch"]), _levels(col["output_h"]), _levels(col["in_channels"]), oc_levels],
        dim=1,
    )


def _levels(x: torch.Tensor) -> torch.Tensor:
    """⌈log2 x⌉ + 1 for positive int64 x: the bit length of x − 1, plus one."""
    lv = torch.ones_like(x)
    v = x - 1
    while bool((v > 0).any()):
        lv += (v > 0).long()
        v = v >> 1
    return lv


@dataclass
class CostBatch:
    """The best schedules of n layers.

    Attributes:
        params: ``[n, 10]`` int64 layer parameters (PARAM_COLUMNS).
        counters: ``[n, 11]`` int64 counters (COUNTER_COLUMNS).
        tiles: ``[n, 4]`` int64 chosen tile sizes (TILE_COLUMNS).
        order_index: ``[n]`` int64 index into ``reference_loop_orders`` of the layer's loops.
    """

    params: torch.Tensor
    counters: torch.Tensor
    tiles: torch.Tensor
    order_index: torch.Tensor

    def __len__(self) -> int:
        return self.params.shape[0]

    @property
    def infeasible(self) -> torch.Tensor:
        """``[n]`` bool: layers that no tiling fits in the buffers."""
        return self.counters[:, 0] < 0

    def column(self, name: str) -> torch.Tensor:
        return self.counters[:, COUNTER_COLUMNS.index(name)]

    def energies_nj(self, hw: BitFusionConfig) -> dict[str, torch.Tensor]:
        """Energy breakdown in nJ (float64 ``[n]`` each), summed in the oracle's order."""
        c = self.counters.to(torch.float64)
        col = {name: c[:, i] for i, name in enumerate(COUNTER_COLUMNS)}
        total, core, sram, dram = hw.energy_nj(
            col["compute_cycles"],
            col["wbuf_read_bits"],
            col["wbuf_write_bits"],
            col["ibuf_read_bits"],
            col["ibuf_write_bits"],
            col["obuf_read_bits"],
            col["obuf_write_bits"],
            col["dram_read_bits"] + col["dram_write_bits"],
        )
        return {"total": total, "core": core, "sram": sram, "dram": dram}

    def latency_ms(self, hw: BitFusionConfig) -> torch.Tensor:
        return self.column("cycles").to(torch.float64) / hw.cycles_per_ms

    def perf_factor(self, hw: BitFusionConfig) -> torch.Tensor:
        a = self.params[:, PARAM_COLUMNS.index("a_bits")].clamp(min=hw.pmin_bits)
        w = self.params[:, PARAM_COLUMNS.index("w_bits")].clamp(min=hw.pmin_bits)
        return (hw.pmax_bits // a) * (hw.pmax_bits // w)

    def tiling(self, i: int) -> dict[str, tuple[int, int]]:
        """``{loop: (tiles, size)}`` of row i, as the oracle reports it."""
        p = dict(zip(PARAM_COLUMNS, self.params[i].tolist()))
        b, o, ic, oc = self.tiles[i].tolist()
        cd = lambda a, s: -(-a // s)  # noqa: E731
        out = {
            "B/b": (cd(p["batch"], b), b),
            "OW/ow": (cd(p["output_h"], o), o),
            "OH/oh": (cd(p["output_h"], o), o),
        }
        if p["depthwise"]:
            out["C/c"] = (cd(p["out_channels"], ic), ic)
        else:
            out["IC/ic"] = (cd(p["in_channels"], ic), ic)
            out["OC/oc"] = (cd(p["out_channels"], oc), oc)
        return out

    def tiling_json(self, i: int) -> str:
        return json.dumps({k: list(v) for k, v in self.tiling(i).items()}, sort_keys=True)

    def loop_order(self, i: int) -> tuple[str, ...]:
        """The chosen loop order of row i, outermost first."""
        dw = bool(self.params[i, PARAM_COLUMNS.index("depthwise")])
        orders = reference_loop_orders(DEPTHWISE_LOOPS if dw else DENSE_LOOPS)
        return orders[int(self.order_index[i])]
