"""The BitFusion cost model vectorized over many layers at once (the PyTorch backend).

Same model as ``oracle.py`` (docs/BITFUSION.md), evaluated for every (layer, tiling, loop order)
candidate as int64 tensor arithmetic, then reduced per layer with the oracle's tie-breaking:
fewest cycles, then least energy, then the reference simulator's loop-order rank, then tiling rank.
"""

from __future__ import annotations

from functools import cache

import torch

from dnas.cost.batch import PARAM_COLUMNS, tiling_levels
from dnas.cost.hardware import BitFusionConfig
from dnas.cost.loop_order import DATA, DENSE_LOOPS, DEPTHWISE_LOOPS, LOOP_INDEXES, order_classes

_P = {name: i for i, name in enumerate(PARAM_COLUMNS)}
# Candidates (tiling x loop order) evaluated per chunk: bounds peak memory to a few hundred MB.
_CHUNK_ELEMENTS = 1 << 21


def _cdiv(a: torch.Tensor, b: torch.Tensor | int) -> torch.Tensor:
    return -torch.div(-a, b, rounding_mode="floor")


@cache
def _order_classes(loops: tuple[str, ...], trivial: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``loop_order.order_classes`` as tensors, for tilings whose loops in bitmask ``trivial``
    have one tile: we evaluate one order of each class and rank it as the class reports.

    Returns:
        orders: ``[R, L]`` int64 loop ids (positions in ``loops``), outermost first.
        rank: ``[R]`` int64 reference rank each evaluated order stands for.
    """
    classes = order_classes(loops, trivial)
    orders = [[loops.index(name) for name in order] for order, _ in classes]
    return torch.tensor(orders, dtype=torch.int64), torch.tensor([r for _, r in classes])


def _tile_grid(params: torch.Tensor, depthwise: bool, hw: BitFusionConfig):
    """Every tiling of every layer that fits the buffers (steps 2-5 of docs/BITFUSION.md).

    Returns a dict of 1-D tensors over the C candidate tilings: ``layer`` (row in params),
    ``tiling_rank`` (position in the oracle's enumeration), ``sizes`` ``[C, 4]`` (b, o, ic, oc),
    ``n`` ``[C, L]`` tile counts per loop, ``footprint`` ``[C, 3]`` (wgt, act, out bits),
    ``compute`` cycles, ``reads`` ``[C, 3]`` on-chip reads (wgt, act, out bits, all tiles).
    """
    p = {k: params[:, i] for k, i in _P.items()}
    K, O, S, B = p["kernel_size"], p["output_h"], p["stride"], p["batch"]
    IC, OC = p["in_channels"], p["out_channels"]
    a, w = p["a_bits"], p["w_bits"]
    im2col = p["im2col"].bool()
    N, M, ob = hw.rows_n, hw.cols_m, hw.out_bits
    pf = (hw.pmax_bits // a.clamp(min=hw.pmin_bits)) * (hw.pmax_bits // w.clamp(min=hw.pmin_bits))

    lb, lo, lic, loc = tiling_levels(params, hw).unbind(1)
    Lb, Lo, Lic, Loc = (int(x.max()) for x in (lb, lo, lic, loc))
    n_layers = params.shape[0]
    shape = (n_layers, Lb, Lo, Lic, Loc)
    ib = torch.arange(Lb).view(1, Lb, 1, 1, 1)
    io = torch.arange(Lo).view(1, 1, Lo, 1, 1)
    iic = torch.arange(Lic).view(1, 1, 1, Lic, 1)
    ioc = torch.arange(Loc).view(1, 1, 1, 1, Loc)
    v5 = lambda t: t.view(-1, 1, 1, 1, 1)  # noqa: E731
    ok = (ib < v5(lb)) & (io < v5(lo)) & (iic < v5(lic)) & (ioc < v5(loc))
    layer, jb, jo, jic, joc = (
        t.reshape(-1)
        for t in torch.broadcast_tensors(
            torch.arange(n_layers).view(-1, 1, 1, 1, 1), ib, io, iic, ioc
        )
    )
    keep = ok.reshape(-1)
    layer, jb, jo, jic, joc = layer[keep], jb[keep], jo[keep], jic[keep], joc[keep]
    tiling_rank = ((jb * Lo + jo) * Lic + jic) * Loc + joc
    del shape

    K, O, S, B, IC, OC, a, w, pf, im2col = (
        t[layer] for t in (K, O, S, B, IC, OC, a, w, pf, im2col)
    )
    one = torch.ones_like(jb)
    b = torch.minimum(one << jb, B)
    o = torch.minimum(one << jo, O)
    ic = torch.minimum(one << jic, IC)
    npf = N * pf
    k2 = K * K
    if depthwise:
        c = ic
        oc = c
        wgt = k2 * c * w
        act = ((o - 1) * S + K) ** 2 * c * b * a
        out = o * o * c * b * ob
    else:
        oc = torch.where(im2col, torch.minimum(one << joc, OC), torch.minimum((one << joc) * M, OC))
        ocm = _cdiv(oc, M) * M
        wgt = _cdiv(k2 * ic, npf) * npf * oc * w
        act = torch.where(im2col, o * o * k2 * ic * b * a, ((o - 1) * S + K) ** 2 * ic * b * a)
        out = o * o * ocm * b * ob
    fits = (wgt <= hw.wbuf_cap_bits) & (act <= hw.ibuf_cap_bits) & (out <= hw.obuf_cap_bits)

    sel = lambda t: t[fits]  # noqa: E731
    layer, tiling_rank = sel(layer), sel(tiling_rank)
    b, o, ic, oc, wgt, act, out = map(sel, (b, o, ic, oc, wgt, act, out))
    K, O, B, IC, OC, a, w, npf, im2col = map(sel, (K, O, B, IC, OC, a, w, npf, im2col))
    k2 = K * K
    nb, no = _cdiv(B, b), _cdiv(O, o)
    if depthwise:
        nc = _cdiv(OC, ic)
        n = torch.stack([nb, no, no, nc], dim=1)
        T = nb * no * no * nc
        lanes = hw.dw_lanes * (npf // N)
        compute = T * b * o * o * k2 * _cdiv(ic, lanes)
        r_act = T * o * o * k2 * ic * b * a
        r_wgt = T * k2 * ic * w
        r_out = T * o * o * ic * b * ob
    else:
        nic, noc = _cdiv(IC, ic), _cdiv(OC, oc)
        n = torch.stack([nb, no, no, nic, noc], dim=1)
        T = nb * no * no * nic * noc
        ocm = _cdiv(oc, M) * M
        red = torch.where(im2col, _cdiv(k2 * ic, npf), k2 * _cdiv(ic, npf))
        compute = T * b * o * o * (ocm // M) * red
        # Step 5: the on-chip dataflow with the least access energy (ties: is, os, ws).
        isl = ocm
        osl = torch.where(im2col, _cdiv(k2 * ic, npf) * npf, _cdiv(ic, npf) * npf * k2)
        wsl = b * o * o
        e_is = osl * wsl * (a + isl * (w + ob))
        e_os = isl * wsl * (ob + osl * (a + w))
        e_ws = osl * isl * (w + wsl * (a + ob))
        e_min = torch.minimum(torch.minimum(e_is, e_os), e_ws)
        use_is = e_is == e_min
        use_os = ~use_is & (e_os == e_min)
        x_is = k2 * ic * o * o * b
        x_os = oc * o * o * b * k2 * ic
        x_ws = k2 * ic * oc * b * o * o
        x = torch.where(use_is, x_is, torch.where(use_os, x_os, x_ws))
        r_act = T * x * a
        r_wgt = T * torch.where(use_is, x * oc * w, torch.where(use_os, x * w, k2 * ic * oc * w))
        r_out = T * ob * torch.where(use_is, x * oc, torch.where(use_os, oc * o * o * b, x))
    return {
        "layer": layer,
        "tiling_rank": tiling_rank,
        "sizes": torch.stack([b, o, ic, oc], dim=1),
        "n": n,
        "footprint": torch.stack([wgt, act, out], dim=1),
        "compute": compute,
        "reads": torch.stack([r_wgt, r_act, r_out], dim=1),
    }


def _evaluate_orders(cand: dict, loops, orders, hw: BitFusionConfig):
    """Steps 6-9 for every candidate under every loop order given: ``[c, R]`` tensors."""
    n = cand["n"]  # [c, L]
    caps = (hw.wbuf_cap_bits, hw.ibuf_cap_bits, hw.obuf_cap_bits)
    L = len(loops)
    fills, residents = [], []
    for di, d in enumerate(DATA):
        idx = torch.tensor([lp in LOOP_INDEXES[loops][d] for lp in loops])
        fp = cand["footprint"][:, di : di + 1].expand(-1, orders.shape[0])
        fill, resident = fp.clone(), fp.clone()
        live = torch.ones_like(fill, dtype=torch.bool)
        for pos in range(L - 1, -1, -1):  # innermost loop first
            lid = orders[:, pos]  # [R]
            n_at = n[:, lid]  # [c, R]
            indexes = idx[lid].unsqueeze(0)  # [1, R]
            grow = ~live | indexes
            fill = torch.where(grow, fill * n_at, fill)
            live_idx = live & indexes
            live = live & ~(live_idx & (fill > caps[di]))
            resident = torch.where(live & indexes, fill, resident)
        fills.append(fill)
        residents.append(resident)
    f_wgt, f_act, f_out = fills
    dram_rd = f_wgt + f_act + f_out
    dram_wr = f_out
    init = residents[0] + residents[1] + residents[2]
    fin = residents[2]
    mid = dram_rd + dram_wr - init - fin
    bw = hw.dram_bits_per_cycle
    compute = cand["compute"].unsqueeze(1)
    stall = (_cdiv(mid, bw) - compute).clamp(min=0) + _cdiv(init, bw) + _cdiv(fin, bw)
    reads = cand["reads"]
    r_wgt, r_act, r_out = (reads[:, i : i + 1] for i in range(3))
    obuf = f_out + r_out
    f = lambda t: t.to(torch.float64)  # noqa: E731
    of = f(obuf)
    energy = hw.energy_nj(
        f(compute), f(r_wgt), f(f_wgt), f(r_act), f(f_act), of, of, f(dram_rd + dram_wr)
    )[0]
    return {
        "cycles": compute + stall,
        "energy": energy,
        "stall": stall,
        "dram_rd": dram_rd,
        "dram_wr": dram_wr,
        "wbuf_wr": f_wgt,
        "ibuf_wr": f_act,
        "obuf": obuf,
    }


class _RunningBest:
    """Per layer, the best candidate so far by (cycles, energy, order rank, tiling rank)."""

    INF = torch.iinfo(torch.int64).max

    def __init__(self, n_layers: int) -> None:
        self.n = n_layers
        self.key = torch.full((n_layers, 3), self.INF, dtype=torch.int64)  # cycles, rank, tiling
        self.energy = torch.full((n_layers,), float("inf"), dtype=torch.float64)
        self.counters = torch.full((n_layers, 11), -1, dtype=torch.int64)
        self.tiles = torch.full((n_layers, 4), -1, dtype=torch.int64)
        self.order_index = torch.full((n_layers,), -1, dtype=torch.int64)

    def _segment_min(self, seg: torch.Tensor, values: torch.Tensor, fill) -> torch.Tensor:
        out = torch.full((self.n,), fill, dtype=values.dtype)
        return out.scatter_reduce(0, seg, values, "amin")

    def fold(self, cand: dict, ev: dict, ranks: torch.Tensor) -> None:
        """Fold the ``[c, R]`` evaluations of one chunk of candidates into the running best."""
        c, R = ev["cycles"].shape
        seg = cand["layer"].unsqueeze(1).expand(c, R).reshape(-1)
        cyc, en = ev["cycles"].reshape(-1), ev["energy"].reshape(-1)
        rk = ranks.unsqueeze(0).expand(c, R).reshape(-1)
        tr = cand["tiling_rank"].unsqueeze(1).expand(c, R).reshape(-1)
        # Lexicographic min per layer within the chunk, one key at a time.
        mask = cyc == self._segment_min(seg, cyc, self.INF)[seg]
        mask &= en == self._segment_min(seg, torch.where(mask, en, torch.inf), torch.inf)[seg]
        mask &= rk == self._segment_min(seg, torch.where(mask, rk, self.INF), self.INF)[seg]
        mask &= tr == self._segment_min(seg, torch.where(mask, tr, self.INF), self.INF)[seg]
        pos = torch.nonzero(mask).squeeze(1)  # one winner per layer present in the chunk
        layer = seg[pos]
        new, old = torch.stack([cyc[pos], rk[pos], tr[pos]], dim=1), self.key[layer]
        new_e, old_e = en[pos], self.energy[layer]
        tie_e = new_e == old_e
        better = (new[:, 0] < old[:, 0]) | (
            (new[:, 0] == old[:, 0])
            & (
                (new_e < old_e)
                | (tie_e & (new[:, 1] < old[:, 1]))
                | (tie_e & (new[:, 1] == old[:, 1]) & (new[:, 2] < old[:, 2]))
            )
        )
        pos, layer = pos[better], layer[better]
        self.key[layer], self.energy[layer] = new[better], new_e[better]
        ci = pos // R
        at = lambda k: ev[k].reshape(-1)[pos]  # noqa: E731
        reads, obuf = cand["reads"][ci], at("obuf")
        self.counters[layer] = torch.stack(
            [at("cycles"), cand["compute"][ci], at("stall"), at("dram_rd"), at("dram_wr"),
             reads[:, 0], at("wbuf_wr"), reads[:, 1], at("ibuf_wr"), obuf, obuf],
            dim=1,
        )  # fmt: skip
        self.tiles[layer] = cand["sizes"][ci]
        self.order_index[layer] = ranks[pos % R]


def _group_best(params: torch.Tensor, depthwise: bool, hw: BitFusionConfig):
    """Best schedule of every layer of one kind; rows with no fitting tiling get -1."""
    loops = DEPTHWISE_LOOPS if depthwise else DENSE_LOOPS
    cand = _tile_grid(params, depthwise, hw)
    best = _RunningBest(params.shape[0])
    # Candidates with the same single-tile loops share their loop-order classes.
    trivial = ((cand["n"] == 1).long() * (1 << torch.arange(len(loops)))).sum(1)
    for mask in torch.unique(trivial).tolist():
        orders, ranks = _order_classes(loops, mask)
        group = torch.nonzero(trivial == mask).squeeze(1)
        step = max(1, _CHUNK_ELEMENTS // orders.shape[0])
        for start in range(0, group.numel(), step):
            sub = {k: v[group[start : start + step]] for k, v in cand.items()}
            best.fold(sub, _evaluate_orders(sub, loops, orders, hw), ranks)
    return best.counters, best.tiles, best.order_index


def bitfusion_cost_torch(
    params: torch.Tensor, hw: BitFusionConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Evaluate the BitFusion model for many layers (the PyTorch backend).

    Args:
        params: ``[n, 10]`` int64 layer parameters (``batch.PARAM_COLUMNS``).
        hw: the hardware configuration.

    Returns:
        ``counters`` ``[n, 11]`` int64 (``COUNTER_COLUMNS``), ``tiles`` ``[n, 4]`` int64
        (``TILE_COLUMNS``) and ``order_index`` ``[n]`` int64 (rank in ``reference_loop_orders``);
        -1 throughout for a layer that no tiling fits.
    """
    params = params.to(torch.int64).cpu()
    n = params.shape[0]
    counters = torch.full((n, 11), -1, dtype=torch.int64)
    tiles = torch.full((n, 4), -1, dtype=torch.int64)
    order_index = torch.full((n,), -1, dtype=torch.int64)
    dw = params[:, _P["depthwise"]].bool()
    for depthwise in (False, True):
        rows = torch.nonzero(dw == depthwise).squeeze(1)
        if rows.numel() == 0:
            continue
        c, t, o = _group_best(params[rows], depthwise, hw)
        counters[rows], tiles[rows], order_index[rows] = c, t, o
    return counters, tiles, order_index
