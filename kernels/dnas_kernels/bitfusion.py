"""The BitFusion per-layer schedule search as one Triton kernel.

``bitfusion_cost`` evaluates the model of docs/BITFUSION.md for a batch of layers and returns,
per layer, the integer counters of the best schedule, its tile sizes and its loop order. The whole
search over tilings and loop orders runs inside the kernel; the results are identical to
``dnas.cost.oracle`` (the truth), including which of several equally good schedules is reported.

Work layout:
    * Dense and depthwise layers go to two launches of the same kernel, specialised by constexprs.
    * A program searches ``BLOCK_L`` layers at once; its lanes form a 3-D block
      ``[BLOCK_L layers, BLOCK_T tilings, BLOCK_O loop orders]``. Per-layer terms are
      ``[BLOCK_L, 1, 1]``, per-tiling terms (tile sizes and counts, footprints, compute cycles,
      on-chip reads) ``[BLOCK_L, BLOCK_T, 1]``, per-order terms (loop ids) ``[1, 1, BLOCK_O]``; the
      loop-order walk and the cost of each schedule fill the whole block.
    * The program loops over chunks of ``BLOCK_T`` tiling indices. The tiling index ``t`` enumerates
      b outermost, then o, then ic (depthwise: c), then oc innermost, like the oracle. Each chunk is
      reduced per layer to its best key ``(cycles, energy, order index, tiling index)`` and merged
      into a running best; when a layer's best improves, the counters of the winning lane are
      written straight to the output row by a masked store (no gather needed).
    * Layers are sorted on the host by their number of tilings before they are grouped, so that the
      layers sharing a program need about as many chunks. A GPU uses one layer per program and
      512-lane blocks (registers); the interpreter, which pays a fixed Python cost per tl op, uses
      16 layers per program and 64k-lane blocks.
    * Loop orders that differ only by swapping OW and OH are one lane (see ``_order_table``).

Kernel steps ↔ docs/BITFUSION.md steps (marked "Step k" in the kernel):
    1 fusion factor; 2 tile sizes, levels and tile counts; 3 footprints and the fit test (depthwise:
    the project's extension); 4 compute cycles; 5 on-chip dataflow and buffer reads; 6 the
    loop-order walk; 7 DRAM traffic and stalls; 8 buffer writes; 9 energy; 10 the lexicographic
    choice of the schedule.

Numerics: counters are int64 throughout (they reach ~1e12). Energy is float64 and summed in exactly
the order of ``BitFusionConfig.energy_nj`` so ties between schedules resolve identically. The float energy
constants are handed to the kernel as a float64 tensor rather than as scalars because Triton types
Python float kernel arguments as fp32; every integer constant of ``hw`` is a kernel scalar. On a GPU
the launch disables fp fusion (FMA contraction), which would change the rounding of the energy sums.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

import dnas_kernels
from dnas.cost.batch import COUNTER_COLUMNS, PARAM_COLUMNS, TILE_COLUMNS, tiling_levels
from dnas.cost.hardware import BitFusionConfig
from dnas.cost.loop_order import DENSE_LOOPS, DEPTHWISE_LOOPS, LOOP_INDEXES, order_classes

__all__ = ["bitfusion_cost", "compile_for_gpu"]

# The kernel reads parameters and writes counters by position; it assumes these layouts.
_KERNEL_PARAM_COLUMNS = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "output_h",
    "batch",
    "w_bits",
    "a_bits",
    "depthwise",
    "im2col",
)
_KERNEL_COUNTER_COLUMNS = (
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
assert PARAM_COLUMNS == _KERNEL_PARAM_COLUMNS, "PARAM_COLUMNS changed: update the kernel"
assert COUNTER_COLUMNS == _KERNEL_COUNTER_COLUMNS, "COUNTER_COLUMNS changed: update the kernel"
assert TILE_COLUMNS == ("b", "o", "ic", "oc"), "TILE_COLUMNS changed: update the kernel"

# Block shapes. The interpreter runs each tl op as a numpy op over the whole block plus a fixed
# Python overhead that dominates, so it wants few, big blocks (measured best: 16 layers, 64k lanes).
# A GPU wants one layer per program and blocks that fit in registers: 512 lanes on 8 warps compile
# for sm_80 without spills (dense: 8 tilings × 64 orders; depthwise: 32 × 16).
_INTERPRETER_LAYERS = 16
_INTERPRETER_LANES = 65536
_GPU_LAYERS = 1
_GPU_LANES = 512
_GPU_WARPS = 8

# Kernel loop ids. A depthwise layer's C loop takes the IC slot; its OC slot is a dummy loop of one
# tile that indexes nothing (so every layer walks five loops; a one-tile loop never changes a walk).
_LOOP_B, _LOOP_OW, _LOOP_OH, _LOOP_IC, _LOOP_OC = range(5)
_I64_MAX = tl.constexpr(2**63 - 1)
_KEY_SHIFT = tl.constexpr(2**32)  # key = reference order index * 2**32 + tiling index


@triton.jit(do_not_specialize=["n_rows", "n_orders", "rows_n", "cols_m", "pmax", "pmin", "cap_w",
                               "cap_i", "cap_o", "bw", "out_bits", "dw_lanes"])  # fmt: skip
def _bitfusion_kernel(
    params_ptr,
    n_rows,
    loops_ptr,
    ref_ptr,
    e_ptr,
    counters_ptr,
    tiles_ptr,
    order_out_ptr,
    n_orders,
    rows_n,
    cols_m,
    pmax,
    pmin,
    cap_w,
    cap_i,
    cap_o,
    bw,
    out_bits,
    dw_lanes,
    ACT_MASK: tl.constexpr,
    WGT_MASK: tl.constexpr,
    OUT_MASK: tl.constexpr,
    DEPTHWISE: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_O: tl.constexpr,
):
    """Search every (tiling, loop order) of ``BLOCK_L`` layers; store each layer's best schedule.

    Args:
        params_ptr: ``[n_rows, 10]`` int64 layer parameters (PARAM_COLUMNS).
        n_rows: number of layers.
        loops_ptr: ``[n_orders, 5]`` int32 kernel loop ids of each loop order, outermost first
            (0 = B, 1 = OW, 2 = OH, 3 = IC or depthwise C, 4 = OC or the depthwise dummy).
        ref_ptr: ``[n_orders]`` int32 index of each order in ``reference_loop_orders``.
        e_ptr: ``[8]`` float64 energies (nJ): core per cycle; per bit wbuf rd, wbuf wr, ibuf rd,
            ibuf wr, obuf rd, obuf wr, DRAM.
        counters_ptr: ``[n_rows, 11]`` int64 output (COUNTER_COLUMNS), pre-filled with -1.
        tiles_ptr: ``[n_rows, 4]`` int64 output tile sizes (b, o, ic, oc), pre-filled with -1.
        order_out_ptr: ``[n_rows]`` int64 output reference order index.
        n_orders: rows of the order table.
        rows_n, cols_m, pmax, pmin, cap_w, cap_i, cap_o, bw, out_bits, dw_lanes: the hardware's
            integer constants (capacities: bits per tile; bw: DRAM bits per cycle).
        ACT_MASK, WGT_MASK, OUT_MASK: bit l set iff kernel loop id l indexes that datum.
        DEPTHWISE: the layer kind of every row.
        BLOCK_L: layers per program. BLOCK_T: tilings per chunk. BLOCK_O: n_orders rounded up to
            a power of two.
    """
    # ---- Per-layer terms: [BLOCK_L] vectors, and [BLOCK_L, 1, 1] views ("...3"). ----
    rows = tl.program_id(0).to(tl.int64) * BLOCK_L + tl.arange(0, BLOCK_L).to(tl.int64)
    row_ok = rows < n_rows
    p = params_ptr + rows * 10
    IC = tl.load(p + 0, mask=row_ok, other=1).to(tl.int64)
    OC = tl.load(p + 1, mask=row_ok, other=1).to(tl.int64)
    K = tl.load(p + 2, mask=row_ok, other=1).to(tl.int64)
    S = tl.load(p + 3, mask=row_ok, other=1).to(tl.int64)
    O = tl.load(p + 4, mask=row_ok, other=1).to(tl.int64)
    B = tl.load(p + 5, mask=row_ok, other=1).to(tl.int64)
    w_bits = tl.load(p + 6, mask=row_ok, other=1).to(tl.int64)
    a_bits = tl.load(p + 7, mask=row_ok, other=1).to(tl.int64)
    im2col = tl.load(p + 9, mask=row_ok, other=0) != 0
    n_orders = n_orders.to(tl.int64)
    rows_n = rows_n.to(tl.int64)
    cols_m = cols_m.to(tl.int64)
    pmax = pmax.to(tl.int64)
    pmin = pmin.to(tl.int64)
    cap_w = cap_w.to(tl.int64)
    cap_i = cap_i.to(tl.int64)
    cap_o = cap_o.to(tl.int64)
    bw = bw.to(tl.int64)
    out_bits = out_bits.to(tl.int64)
    dw_lanes = dw_lanes.to(tl.int64)
    if DEPTHWISE:
        IC = OC  # C channels; the c tiles take the ic slot
    e_core = tl.load(e_ptr + 0)
    e_wbuf_rd = tl.load(e_ptr + 1)
    e_wbuf_wr = tl.load(e_ptr + 2)
    e_ibuf_rd = tl.load(e_ptr + 3)
    e_ibuf_wr = tl.load(e_ptr + 4)
    e_obuf_rd = tl.load(e_ptr + 5)
    e_obuf_wr = tl.load(e_ptr + 6)
    e_dram = tl.load(e_ptr + 7)

    # Step 1: fusion factor pf; it widens the reduction rows (dense) or channel lanes (depthwise).
    pf = (pmax // tl.maximum(a_bits, pmin)) * (pmax // tl.maximum(w_bits, pmin))
    npf = rows_n * pf
    dw_cycle_lanes = dw_lanes * pf

    # Step 2: levels(X) = ceil(log2 X) + 1 = 1 + #{i >= 0 : 2**i < X} tile sizes per dimension;
    # the four counts (each < 64) are packed into one int64 so that one reduction gives all.
    pow_i = tl.arange(0, 64).to(tl.int64)[None, :]
    pow2 = tl.where(pow_i < 63, tl.full([1, 64], 1, tl.int64) << pow_i, _I64_MAX)
    # levels of the oc loop: min(2**j, OC) (im2col) or min(2**j·M, OC); depthwise has none (1).
    oc_levels_of = tl.where(im2col, OC, (OC + cols_m - 1) // cols_m)
    if DEPTHWISE:
        oc_levels_of = OC * 0 + 1
    below = (
        (pow2 < B[:, None]).to(tl.int64)
        + ((pow2 < O[:, None]).to(tl.int64) << 8)
        + ((pow2 < IC[:, None]).to(tl.int64) << 16)
        + ((pow2 < oc_levels_of[:, None]).to(tl.int64) << 24)
    )
    packed = tl.sum(below, axis=1)
    lv_o = 1 + ((packed >> 8) & 255)
    lv_ic = 1 + ((packed >> 16) & 255)
    lv_oc = 1 + ((packed >> 24) & 255)
    n_tilings = (1 + (packed & 255)) * lv_o * lv_ic * lv_oc
    t_end = tl.max(tl.where(row_ok, n_tilings, 0))

    row_ok3 = row_ok[:, None, None]
    IC3 = IC[:, None, None]
    OC3 = OC[:, None, None]
    K3 = K[:, None, None]
    S3 = S[:, None, None]
    O3 = O[:, None, None]
    B3 = B[:, None, None]
    w3 = w_bits[:, None, None]
    a3 = a_bits[:, None, None]
    im3 = im2col[:, None, None]
    npf3 = npf[:, None, None]
    dwl3 = dw_cycle_lanes[:, None, None]
    lv_o3 = lv_o[:, None, None]
    lv_ic3 = lv_ic[:, None, None]
    lv_oc3 = lv_oc[:, None, None]
    nt3 = n_tilings[:, None, None]
    c_row3 = counters_ptr + rows[:, None, None] * 11
    t_row3 = tiles_ptr + rows[:, None, None] * 4

    # ---- Per-order terms: [1, 1, BLOCK_O]. ----
    oi = tl.arange(0, BLOCK_O)[None, None, :]
    o_ok = oi < n_orders
    ref_oi = tl.load(ref_ptr + oi, mask=o_ok, other=0).to(tl.int64)

    # Step 10 state per layer: best (cycles, energy, key), key = ref order index * 2**32 + t.
    best_c = rows * 0 + _I64_MAX
    best_e = (rows * 0).to(tl.float64) + 1.0e308
    best_k = rows * 0 + _I64_MAX
    zeros = tl.zeros([BLOCK_L, BLOCK_T, BLOCK_O], tl.int64)
    zeros_t = tl.zeros([BLOCK_L, BLOCK_T, 1], tl.int64)

    for start in range(0, t_end, BLOCK_T):
        # ---- Per-tiling terms: [BLOCK_L, BLOCK_T, 1]. ----
        t = start + tl.arange(0, BLOCK_T).to(tl.int64)[None, :, None]
        tt = tl.minimum(t, nt3 - 1)  # keeps the shifts and divisions of padding lanes sane
        one = zeros_t + 1
        # Step 2: tile sizes (digits of t, oc fastest) and tile counts.
        j_oc = tt % lv_oc3
        rest = tt // lv_oc3
        j_ic = rest % lv_ic3
        rest = rest // lv_ic3
        j_o = rest % lv_o3
        j_b = rest // lv_o3
        b = tl.minimum(one << j_b, B3)
        o = tl.minimum(one << j_o, O3)
        ic = tl.minimum(one << j_ic, IC3)
        n_b = (B3 + b - 1) // b
        n_o = (O3 + o - 1) // o
        n_ic = (IC3 + ic - 1) // ic
        k2 = K3 * K3
        o2 = o * o
        side = (o - 1) * S3 + K3
        if DEPTHWISE:
            # The project's depthwise extension: loops B, OW, OH, C; c tiles are min(2**j, C).
            oc = ic
            n_oc = one
            tiles = n_b * n_o * n_o * n_ic
            # Step 3: footprints.
            wgt = k2 * ic * w3
            act = side * side * ic * b * a3
            out = o2 * ic * b * out_bits
            # Step 4: compute cycles, dw_lanes·pf channels per cycle.
            compute = tiles * b * o2 * k2 * ((ic + dwl3 - 1) // dwl3)
            # Step 5: on-chip reads (a single dataflow).
            act_rd = tiles * o2 * k2 * ic * b * a3
            wgt_rd = tiles * k2 * ic * w3
            out_rd = tiles * o2 * ic * b * out_bits
        else:
            oc = tl.minimum(tl.where(im3, one << j_oc, (one << j_oc) * cols_m), OC3)
            n_oc = (OC3 + oc - 1) // oc
            tiles = n_b * n_o * n_o * n_ic * n_oc
            oc_groups = (oc + cols_m - 1) // cols_m
            ocm = oc_groups * cols_m
            rows_unrolled = (k2 * ic + npf3 - 1) // npf3  # reduction rows of K²·ic inputs
            rows_conv = (ic + npf3 - 1) // npf3
            # Step 3: footprints.
            wgt = rows_unrolled * npf3 * oc * w3
            act = tl.where(im3, o2 * k2 * ic * b * a3, side * side * ic * b * a3)
            out = o2 * ocm * b * out_bits
            # Step 4: compute cycles.
            compute = tl.where(
                im3,
                tiles * b * o2 * oc_groups * rows_unrolled,
                tiles * b * oc_groups * o2 * k2 * rows_conv,
            )
            # Step 5: the cheapest of input-, output-, weight-stationary (ties: is, os, ws) and
            # its buffer reads, times the number of tiles.
            isl = ocm
            osl = tl.where(im3, rows_unrolled * npf3, rows_conv * npf3 * k2)
            wsl = b * o2
            e_is = osl * wsl * (a3 + isl * (w3 + out_bits))
            e_os = isl * wsl * (out_bits + osl * (a3 + w3))
            e_ws = osl * isl * (w3 + wsl * (a3 + out_bits))
            use_is = (e_is <= e_os) & (e_is <= e_ws)
            use_os = (e_os < e_is) & (e_os <= e_ws)
            x_is = k2 * ic * o2 * b  # x of input-stationary; os and ws have x = x_is·oc
            act_rd = tiles * tl.where(use_is, x_is * a3, x_is * oc * a3)
            out_rd = tiles * tl.where(use_os, oc * o2 * b * out_bits, x_is * oc * out_bits)
            wgt_rd = tiles * tl.where(use_is | use_os, x_is * oc * w3, k2 * ic * oc * w3)
        # Step 3: a tiling is skipped unless every footprint fits its capacity.
        ok = row_ok3 & (t < nt3) & (wgt <= cap_w) & (act <= cap_i) & (out <= cap_o)

        if tl.max(ok.to(tl.int32)) > 0:  # a chunk where nothing fits costs no more
            # ---- Step 6: the loop-order walk, [BLOCK_L, BLOCK_T, BLOCK_O]. ----
            # Innermost loop first. A live datum grows only along the loops that index it and
            # dies once its fill exceeds its capacity; a dead one is re-fetched on every loop.
            # While live, resident == fill.
            fill_w = wgt
            fill_a = act
            fill_o = out
            res_w = wgt
            res_a = act
            res_o = out
            live_w = ok
            live_a = ok
            live_o = ok
            for q in tl.static_range(5):
                lid = tl.load(loops_ptr + oi * 5 + (4 - q), mask=o_ok, other=0)
                n = tl.where(lid == 0, n_b, tl.where(lid == 3, n_ic, tl.where(lid == 4, n_oc, n_o)))
                stay = live_w & (((WGT_MASK >> lid) & 1) == 0)
                fill_w = fill_w * tl.where(stay, 1, n)
                live_w = live_w & (fill_w <= cap_w)
                res_w = tl.where(live_w, fill_w, res_w)
                stay = live_a & (((ACT_MASK >> lid) & 1) == 0)
                fill_a = fill_a * tl.where(stay, 1, n)
                live_a = live_a & (fill_a <= cap_i)
                res_a = tl.where(live_a, fill_a, res_a)
                stay = live_o & (((OUT_MASK >> lid) & 1) == 0)
                fill_o = fill_o * tl.where(stay, 1, n)
                live_o = live_o & (fill_o <= cap_o)
                res_o = tl.where(live_o, fill_o, res_o)
            # ---- Step 7: DRAM traffic and stalls. ----
            dram_rd = fill_w + fill_a + fill_o
            dram_wr = fill_o
            init = res_w + res_a + res_o
            mid = dram_rd + dram_wr - init - res_o
            stall = (
                tl.maximum((mid + bw - 1) // bw - compute, 0)
                + (init + bw - 1) // bw
                + (res_o + bw - 1) // bw
            )
            cycles = compute + stall
            # ---- Step 8: buffer writes: wbuf_wr = fill_w, ibuf_wr = fill_a, obuf rd = wr. ----
            obuf = fill_o + out_rd
            # ---- Step 9: energy, float64, in BitFusionConfig.energy_nj's summation order. ----
            obuf_f = obuf.to(tl.float64)
            sram = (
                wgt_rd.to(tl.float64) * e_wbuf_rd
                + fill_w.to(tl.float64) * e_wbuf_wr
                + act_rd.to(tl.float64) * e_ibuf_rd
                + fill_a.to(tl.float64) * e_ibuf_wr
                + obuf_f * e_obuf_rd
                + obuf_f * e_obuf_wr
            )
            dram = (dram_rd + dram_wr).to(tl.float64) * e_dram
            energy = e_core * compute.to(tl.float64) + sram + dram
            # ---- Step 10: each layer's best key in the chunk, merged into its running best. ----
            valid = ok & o_ok
            cyc = tl.where(valid, cycles, _I64_MAX)
            c_min = tl.min(tl.reshape(cyc, [BLOCK_L, BLOCK_T * BLOCK_O]), axis=1)
            at_c = valid & (cyc == c_min[:, None, None])
            en = tl.where(at_c, energy, 1.0e308)
            e_min = tl.min(tl.reshape(en, [BLOCK_L, BLOCK_T * BLOCK_O]), axis=1)
            key = tl.where(at_c & (en == e_min[:, None, None]), ref_oi * _KEY_SHIFT + t, _I64_MAX)
            k_min = tl.min(tl.reshape(key, [BLOCK_L, BLOCK_T * BLOCK_O]), axis=1)
            better = (c_min < best_c) | (
                (c_min == best_c) & ((e_min < best_e) | ((e_min == best_e) & (k_min < best_k)))
            )
            better = better & (c_min < _I64_MAX)
            best_c = tl.where(better, c_min, best_c)
            best_e = tl.where(better, e_min, best_e)
            best_k = tl.where(better, k_min, best_k)
            # Write the counters of each improved layer's winning lane (one lane per layer). A
            # later improvement overwrites them: the reductions above synchronise the program's
            # threads between chunks, so the stores of successive chunks land in order.
            better3 = better[:, None, None]
            win = better3 & (key == k_min[:, None, None])
            win_t = better3 & (t == (k_min % _KEY_SHIFT)[:, None, None])
            cw = c_row3 + zeros
            ct = c_row3 + zeros_t
            tw = t_row3 + zeros_t
            tl.store(ct + 1, compute, mask=win_t)
            tl.store(cw + 2, stall, mask=win)
            tl.store(cw + 3, dram_rd, mask=win)
            tl.store(cw + 4, dram_wr, mask=win)
            tl.store(ct + 5, wgt_rd, mask=win_t)
            tl.store(cw + 6, fill_w, mask=win)
            tl.store(ct + 7, act_rd, mask=win_t)
            tl.store(cw + 8, fill_a, mask=win)
            tl.store(cw + 9, obuf, mask=win)
            tl.store(cw + 10, obuf, mask=win)
            tl.store(tw + 0, b, mask=win_t)
            tl.store(tw + 1, o, mask=win_t)
            tl.store(tw + 2, ic, mask=win_t)
            tl.store(tw + 3, oc, mask=win_t)

    # Cycles and the order index; a layer with no fitting tiling keeps its -1 row.
    found = best_c < _I64_MAX
    tl.store(counters_ptr + rows * 11, tl.where(found, best_c, -1), mask=row_ok)
    tl.store(order_out_ptr + rows, tl.where(found, best_k // _KEY_SHIFT, -1), mask=row_ok)


@dataclass(frozen=True)
class _OrderTable:
    """The loop orders of one layer kind as the kernel takes them.

    Attributes:
        loops: ``[n_orders, 5]`` int32 kernel loop ids, outermost first.
        ref_index: ``[n_orders]`` int32 index of each order in ``reference_loop_orders``.
        act_mask, wgt_mask, out_mask: bit l set iff kernel loop id l indexes that datum.
    """

    loops: torch.Tensor
    ref_index: torch.Tensor
    act_mask: int
    wgt_mask: int
    out_mask: int


@functools.cache
def _order_table(depthwise: bool) -> _OrderTable:
    """The kernel's loop-order table of dense or depthwise layers: ``order_classes`` of its loops.

    OW and OH always have the same number of tiles and index the same data, so two orders that
    differ only by swapping them walk identically for every tiling; of such a pair only the one the
    reference tries first can be reported (ties go to the lower order index), so only it is kept:
    60 of the 120 dense orders, 12 of the 24 depthwise ones. A depthwise order gets a fifth,
    outermost dummy loop (kernel id 4: one tile, indexing nothing), which leaves the walk unchanged.
    """
    loops = DEPTHWISE_LOOPS if depthwise else DENSE_LOOPS
    ids = {name: i for i, name in enumerate(loops)}  # B, OW, OH, IC or C, OC (dense)
    rows: list[list[int]] = []
    refs: list[int] = []
    for order, rank in order_classes(loops):
        row = [ids[name] for name in order]
        rows.append([_LOOP_OC, *row] if depthwise else row)
        refs.append(rank)
    masks = {d: sum(1 << ids[name] for name in idx) for d, idx in LOOP_INDEXES[loops].items()}
    return _OrderTable(
        loops=torch.tensor(rows, dtype=torch.int32),
        ref_index=torch.tensor(refs, dtype=torch.int32),
        act_mask=masks["act"],
        wgt_mask=masks["wgt"],
        out_mask=masks["out"],
    )


def _check_params(params: torch.Tensor, hw: BitFusionConfig) -> None:
    """Reject what the oracle rejects (and malformed tensors) with a ValueError."""
    if params.dim() != 2 or params.shape[1] != len(PARAM_COLUMNS):
        raise ValueError(f"params must be [n, {len(PARAM_COLUMNS)}], got {tuple(params.shape)}")
    if params.dtype != torch.int64:
        raise ValueError(f"params must be int64, got {params.dtype}")
    if params.shape[0] == 0:
        return
    col = {name: params[:, i] for i, name in enumerate(PARAM_COLUMNS)}
    for name in PARAM_COLUMNS[:8]:
        if bool((col[name] <= 0).any()):
            raise ValueError(f"params column {name} must be positive")
    for name in ("depthwise", "im2col"):
        if bool(((col[name] != 0) & (col[name] != 1)).any()):
            raise ValueError(f"params column {name} must be 0 or 1")
    for name in ("w_bits", "a_bits"):
        if bool((col[name] > hw.pmax_bits).any()):
            raise ValueError(
                f"{name} exceeds the hardware's highest precision pmax_bits={hw.pmax_bits}"
            )
    dw = col["depthwise"] == 1
    if bool((dw & (col["in_channels"] != col["out_channels"])).any()):
        raise ValueError("a depthwise layer needs in_channels == out_channels")
    if bool((dw & (col["im2col"] == 1)).any()):
        raise ValueError("im2col is only modelled for dense layers")


def _n_tilings(params: torch.Tensor, hw: BitFusionConfig) -> torch.Tensor:
    """``[n]`` number of tilings of each layer (host side, only to group similar layers)."""
    return tiling_levels(params, hw).prod(dim=1)


def _launch_shape(depthwise: bool, interpreting: bool) -> dict[str, int]:
    """Block constexprs (BLOCK_L, BLOCK_T, BLOCK_O) of one layer kind."""
    block_o = triton.next_power_of_2(_order_table(depthwise).loops.shape[0])
    block_l, lanes = (
        (_INTERPRETER_LAYERS, _INTERPRETER_LANES) if interpreting else (_GPU_LAYERS, _GPU_LANES)
    )
    return {"BLOCK_L": block_l, "BLOCK_T": max(1, lanes // (block_l * block_o)), "BLOCK_O": block_o}


def compile_for_gpu(depthwise: bool, arch: int = 80) -> object:
    """Compile the kernel for a CUDA target as ``bitfusion_cost`` would launch it, without a GPU.

    For checks on CPU-only machines (does the GPU path compile; no fp64 FMA in the PTX). Needs
    ``TRITON_INTERPRET=0`` when this module is first imported, and triton's NVIDIA backend.

    Args:
        depthwise: the layer kind to specialise for.
        arch: CUDA compute capability, e.g. 80 for sm_80.

    Returns:
        triton's compiled kernel; its ``asm`` dict holds the ``ttir``, ``ptx`` and ``cubin``.
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if dnas_kernels.interpreted():
        raise RuntimeError("compile_for_gpu needs TRITON_INTERPRET=0 before dnas_kernels loads")
    table = _order_table(depthwise)
    constexprs = {
        "ACT_MASK": table.act_mask,
        "WGT_MASK": table.wgt_mask,
        "OUT_MASK": table.out_mask,
        "DEPTHWISE": depthwise,
        **_launch_shape(depthwise, interpreting=False),
    }
    pointers = {
        "params_ptr": "*i64",
        "loops_ptr": "*i32",
        "ref_ptr": "*i32",
        "e_ptr": "*fp64",
        "counters_ptr": "*i64",
        "tiles_ptr": "*i64",
        "order_out_ptr": "*i64",
    }
    kernel = _bitfusion_kernel
    signature = {
        name: "constexpr" if name in constexprs else pointers.get(name, "i32")
        for name in kernel.arg_names
    }
    src = ASTSource(
        fn=kernel,
        signature=signature,
        constexprs={(kernel.arg_names.index(k),): v for k, v in constexprs.items()},
    )
    return triton.compile(
        src,
        target=GPUTarget("cuda", arch, 32),
        options={"enable_fp_fusion": False, "num_warps": _GPU_WARPS},
    )


def bitfusion_cost(
    params: torch.Tensor, hw: BitFusionConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best BitFusion schedule of each layer, searched by a Triton kernel (GPU or interpreter).

    Args:
        params: ``[n, 10]`` int64 layer parameters (``PARAM_COLUMNS``), e.g. from
            ``dnas.cost.batch.layers_to_params``.
        hw: the hardware; every constant of the model is taken from it.

    Returns:
        ``(counters, tiles, order_index)`` on ``params.device``: counters ``[n, 11]`` int64 in
        ``COUNTER_COLUMNS`` order; tiles ``[n, 4]`` int64 chosen tile sizes (b, o, ic, oc), for
        depthwise (b, o, c, c); order_index ``[n]`` int64 index into
        ``reference_loop_orders(DENSE_LOOPS or DEPTHWISE_LOOPS)``. A layer for which no tiling fits
        the buffers gets -1 in every output column.

    Raises:
        ValueError: malformed params, or bits above ``hw.pmax_bits`` (as the oracle).
    """
    _check_params(params, hw)
    n = params.shape[0]
    out_device = params.device
    interpreting = dnas_kernels.interpreted()
    device = torch.device("cpu") if interpreting else torch.device("cuda")

    counters = torch.full((n, len(COUNTER_COLUMNS)), -1, dtype=torch.int64)
    tiles = torch.full((n, len(TILE_COLUMNS)), -1, dtype=torch.int64)
    order_index = torch.full((n,), -1, dtype=torch.int64)
    if n == 0:
        return counters.to(out_device), tiles.to(out_device), order_index.to(out_device)

    energies = torch.tensor(
        [
            hw.e_core_nj_per_cycle,
            hw.e_wbuf_rd_nj_per_bit,
            hw.e_wbuf_wr_nj_per_bit,
            hw.e_ibuf_rd_nj_per_bit,
            hw.e_ibuf_wr_nj_per_bit,
            hw.e_obuf_rd_nj_per_bit,
            hw.e_obuf_wr_nj_per_bit,
            hw.e_dram_nj_per_bit,
        ],
        dtype=torch.float64,
        device=device,
    )
    launch_opts = {} if interpreting else {"enable_fp_fusion": False, "num_warps": _GPU_WARPS}
    host_params = params.cpu()
    dw_col = host_params[:, PARAM_COLUMNS.index("depthwise")] != 0
    for depthwise in (False, True):
        rows = torch.nonzero(dw_col == depthwise).flatten()
        if rows.numel() == 0:
            continue
        # Layers with similar numbers of tilings share a program.
        rows = rows[torch.argsort(_n_tilings(host_params[rows], hw), stable=True)]
        table = _order_table(depthwise)
        shape = _launch_shape(depthwise, interpreting)
        m = rows.numel()
        sub = host_params[rows].contiguous().to(device)
        c_out = torch.full((m, len(COUNTER_COLUMNS)), -1, dtype=torch.int64, device=device)
        t_out = torch.full((m, len(TILE_COLUMNS)), -1, dtype=torch.int64, device=device)
        o_out = torch.full((m,), -1, dtype=torch.int64, device=device)
        _bitfusion_kernel[(triton.cdiv(m, shape["BLOCK_L"]),)](
            sub,
            m,
            table.loops.to(device),
            table.ref_index.to(device),
            energies,
            c_out,
            t_out,
            o_out,
            table.loops.shape[0],
            hw.rows_n,
            hw.cols_m,
            hw.pmax_bits,
            hw.pmin_bits,
            hw.wbuf_cap_bits,
            hw.ibuf_cap_bits,
            hw.obuf_cap_bits,
            hw.dram_bits_per_cycle,
            hw.out_bits,
            hw.dw_lanes,
            ACT_MASK=table.act_mask,
            WGT_MASK=table.wgt_mask,
            OUT_MASK=table.out_mask,
            DEPTHWISE=depthwise,
            **shape,
            **launch_opts,
        )
        counters[rows] = c_out.cpu()
        tiles[rows] = t_out.cpu()
        order_index[rows] = o_out.cpu()
    return counters.to(out_device), tiles.to(out_device), order_index.to(out_device)
