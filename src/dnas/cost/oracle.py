"""The BitFusion per-layer cost model, written for reading: one layer, plain Python integers.

This is the oracle every faster backend is tested against. It follows docs/BITFUSION.md step by
step (Sharma et al., ISCA 2018; the authors' public simulator), plus dnas's depthwise extension.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from dnas.cost.hardware import BitFusionConfig
from dnas.cost.layer import LayerShape
from dnas.cost.loop_order import DENSE_INDEXES, DENSE_LOOPS, DEPTHWISE_INDEXES, DEPTHWISE_LOOPS
from dnas.cost.loop_order import reference_loop_orders as loop_orders


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def levels(x: int) -> int:
    """Number of power-of-two tile sizes tried for a dimension of size x: ceil(log2 x) + 1."""
    return (x - 1).bit_length() + 1


@dataclass(frozen=True)
class LayerCost:
    """The best schedule of one layer and its counters. Bits are bits; energies are nanojoules."""

    cycles: int
    compute_cycles: int
    mem_stall_cycles: int
    latency_ms: float
    total_energy_nJ: float
    core_energy_nJ: float
    sram_energy_nJ: float
    dram_energy_nJ: float
    dram_read_bits: int
    dram_write_bits: int
    wbuf_read_bits: int
    wbuf_write_bits: int
    ibuf_read_bits: int
    ibuf_write_bits: int
    obuf_read_bits: int
    obuf_write_bits: int
    perf_factor: int
    best_tiling: dict[str, tuple[int, int]] = field(compare=False)
    best_loop_order: tuple[str, ...] = field(compare=False)

    @property
    def tiling_json(self) -> str:
        """``{"B/b": [tiles, size], ...}`` with sorted keys, as the reference simulator prints it."""
        return json.dumps({k: list(v) for k, v in self.best_tiling.items()}, sort_keys=True)

    @property
    def loop_order_str(self) -> str:
        """Loops outermost first, joined by '>'."""
        return ">".join(self.best_loop_order)


def _walk(order, tiles, footprint, indexes, caps):
    """Step 6: DRAM fills and resident sizes of each datum for one loop order (outermost first)."""
    fill = dict(footprint)
    resident = dict(footprint)
    for d in fill:
        live = True
        for loop in reversed(order):
            n = tiles[loop]
            if live:
                if loop in indexes[d]:
                    fill[d] *= n
                    if fill[d] > caps[d]:
                        live = False
                    else:
                        resident[d] = fill[d]
            else:
                fill[d] *= n
    return fill, resident


def _schedule(hw, tiles, footprint, indexes, compute, reads, order_list):
    """Steps 7-9 for every loop order of one tiling: yields (cycles, energy, order, stats)."""
    caps = {"wgt": hw.wbuf_cap_bits, "act": hw.ibuf_cap_bits, "out": hw.obuf_cap_bits}
    for oi, order in enumerate(order_list):
        fill, resident = _walk(order, tiles, footprint, indexes, caps)
        dram_rd = fill["wgt"] + fill["act"] + fill["out"]
        dram_wr = fill["out"]
        init = resident["wgt"] + resident["act"] + resident["out"]
        fin = resident["out"]
        mid = dram_rd + dram_wr - init - fin
        bw = hw.dram_bits_per_cycle
        stall = max(0, ceil_div(mid, bw) - compute) + ceil_div(init, bw) + ceil_div(fin, bw)
        obuf = fill["out"] + reads["out"]
        counters = {
            "wbuf_rd": reads["wgt"],
            "wbuf_wr": fill["wgt"],
            "ibuf_rd": reads["act"],
            "ibuf_wr": fill["act"],
            "obuf_rd": obuf,
            "obuf_wr": obuf,
            "dram_rd": dram_rd,
            "dram_wr": dram_wr,
        }
        c = counters
        energies = hw.energy_nj(
            compute,
            c["wbuf_rd"],
            c["wbuf_wr"],
            c["ibuf_rd"],
            c["ibuf_wr"],
            c["obuf_rd"],
            c["obuf_wr"],
            c["dram_rd"] + c["dram_wr"],
        )
        yield compute + stall, energies[0], oi, (stall, counters, energies)


def layer_cost(layer: LayerShape, hw: BitFusionConfig | None = None) -> LayerCost:
    """The best schedule of ``layer`` on ``hw`` (fewest cycles, then least energy).

    Raises:
        ValueError: bits above the hardware's precision, or no tiling fits the buffers.
    """
    hw = hw or BitFusionConfig()
    layer.check_bits(hw)
    if layer.depthwise:
        candidates = _depthwise_candidates(layer, hw)
    else:
        candidates = _dense_candidates(layer, hw)
    best = None
    for ti, (tiling, compute, gen) in enumerate(candidates):
        for cycles, energy, oi, stats in gen:
            key = (cycles, energy, oi, ti)
            if best is None or key < best[0]:
                best = (key, tiling, compute, oi, stats)
    if best is None:
        raise ValueError(f"no tiling of layer {layer} fits the buffers of hardware {hw.name!r}")
    (cycles, _, oi, _), tiling, compute, oi, (stall, c, energies) = best
    loops = DEPTHWISE_LOOPS if layer.depthwise else DENSE_LOOPS
    total, core, sram, dram = energies
    return LayerCost(
        cycles=cycles,
        compute_cycles=compute,
        mem_stall_cycles=stall,
        latency_ms=cycles / hw.cycles_per_ms,
        total_energy_nJ=total,
        core_energy_nJ=core,
        sram_energy_nJ=sram,
        dram_energy_nJ=dram,
        dram_read_bits=c["dram_rd"],
        dram_write_bits=c["dram_wr"],
        wbuf_read_bits=c["wbuf_rd"],
        wbuf_write_bits=c["wbuf_wr"],
        ibuf_read_bits=c["ibuf_rd"],
        ibuf_write_bits=c["ibuf_wr"],
        obuf_read_bits=c["obuf_rd"],
        obuf_write_bits=c["obuf_wr"],
        perf_factor=hw.perf_factor(layer.a_bits, layer.w_bits),
        best_tiling=tiling,
        best_loop_order=loop_orders(loops)[oi],
    )


def _tile_sizes(x: int) -> list[int]:
    return [min(1 << i, x) for i in range(levels(x))]


def _dense_candidates(layer: LayerShape, hw: BitFusionConfig):
    K, O, S = layer.kernel_size, layer.output_h, layer.stride
    IC, OC, B = layer.in_channels, layer.out_channels, layer.batch
    a, w, ob = layer.a_bits, layer.w_bits, hw.out_bits
    N, M = hw.rows_n, hw.cols_m
    pf = hw.perf_factor(a, w)
    npf = N * pf
    if layer.im2col:
        oc_sizes = [min(1 << j, OC) for j in range(levels(OC))]
    else:
        oc_sizes = [min((1 << j) * M, OC) for j in range(levels(ceil_div(OC, M)))]
    orders = loop_orders(DENSE_LOOPS)
    for b in _tile_sizes(B):
        for o in _tile_sizes(O):
            for ic in _tile_sizes(IC):
                for oc in oc_sizes:
                    ocm = ceil_div(oc, M) * M
                    wgt = ceil_div(K * K * ic, npf) * npf * oc * w
                    if layer.im2col:
                        act = o * o * K * K * ic * b * a
                    else:
                        act = ((o - 1) * S + K) ** 2 * ic * b * a
                    out = o * o * ocm * b * ob
                    if wgt > hw.wbuf_cap_bits or act > hw.ibuf_cap_bits or out > hw.obuf_cap_bits:
                        continue
                    n = {
                        "B/b": ceil_div(B, b),
                        "OW/ow": ceil_div(O, o),
                        "OH/oh": ceil_div(O, o),
                        "IC/ic": ceil_div(IC, ic),
                        "OC/oc": ceil_div(OC, oc),
                    }
                    T = n["B/b"] * n["OW/ow"] * n["OH/oh"] * n["IC/ic"] * n["OC/oc"]
                    if layer.im2col:
                        compute = T * b * o * o * (ocm // M) * ceil_div(K * K * ic, npf)
                        osl = ceil_div(K * K * ic, npf) * npf
                    else:
                        compute = T * b * (ocm // M) * o * o * K * K * ceil_div(ic, npf)
                        osl = ceil_div(ic, npf) * npf * K * K
                    isl, wsl = ocm, b * o * o
                    e_is = osl * wsl * (a + isl * (w + ob))
                    e_os = isl * wsl * (ob + osl * (a + w))
                    e_ws = osl * isl * (w + wsl * (a + ob))
                    e_min = min(e_is, e_os, e_ws)
                    if e_is == e_min:
                        x = K * K * ic * o * o * b
                        reads = {"act": x * a, "out": x * oc * ob, "wgt": x * oc * w}
                    elif e_os == e_min:
                        x = oc * o * o * b * K * K * ic
                        reads = {"act": x * a, "out": oc * o * o * b * ob, "wgt": x * w}
                    else:
                        x = K * K * ic * oc * b * o * o
                        reads = {"act": x * a, "out": x * ob, "wgt": K * K * ic * oc * w}
                    reads = {k: v * T for k, v in reads.items()}
                    tiling = {
                        loop: (n[loop], size) for loop, size in zip(DENSE_LOOPS, (b, o, o, ic, oc))
                    }
                    footprint = {"wgt": wgt, "act": act, "out": out}
                    yield (
                        tiling,
                        compute,
                        _schedule(hw, n, footprint, DENSE_INDEXES, compute, reads, orders),
                    )


def _depthwise_candidates(layer: LayerShape, hw: BitFusionConfig):
    K, O, S = layer.kernel_size, layer.output_h, layer.stride
    C, B = layer.out_channels, layer.batch
    a, w, ob = layer.a_bits, layer.w_bits, hw.out_bits
    lanes = hw.dw_lanes * hw.perf_factor(a, w)
    orders = loop_orders(DEPTHWISE_LOOPS)
    for b in _tile_sizes(B):
        for o in _tile_sizes(O):
            for c in _tile_sizes(C):
                wgt = K * K * c * w
                act = ((o - 1) * S + K) ** 2 * c * b * a
                out = o * o * c * b * ob
                if wgt > hw.wbuf_cap_bits or act > hw.ibuf_cap_bits or out > hw.obuf_cap_bits:
                    continue
                n = {
                    "B/b": ceil_div(B, b),
                    "OW/ow": ceil_div(O, o),
                    "OH/oh": ceil_div(O, o),
                    "C/c": ceil_div(C, c),
                }
                T = n["B/b"] * n["OW/ow"] * n["OH/oh"] * n["C/c"]
                compute = T * b * o * o * K * K * ceil_div(c, lanes)
                reads = {
                    "act": T * o * o * K * K * c * b * a,
                    "wgt": T * K * K * c * w,
                    "out": T * o * o * c * b * ob,
                }
                tiling = {
                    loop: (n[loop], size) for loop, size in zip(DEPTHWISE_LOOPS, (b, o, o, c))
                }
                footprint = {"wgt": wgt, "act": act, "out": out}
                yield (
                    tiling,
                    compute,
                    _schedule(hw, n, footprint, DEPTHWISE_INDEXES, compute, reads, orders),
                )
