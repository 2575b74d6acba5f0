"""The differentiable expected cost of a relaxed architecture (docs/DESIGN.md, "The differentiable cost").

    E[cost] = fixed layers + Σ_blocks Σ_k p_k(α) · Interp(table_block,k ; θ, β_w, β_a)

where Interp is multilinear interpolation over the ordered grid indices (width, weight bits,
activation bits), so the cost is exact at integer indices and its gradient reaches α, θ and β.
A skipped block costs nothing.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from dnas.cost.table import CostTable
from dnas.space import SearchSpace


class Relaxed(Protocol):
    """What the expected cost reads from a supernet (``dnas.supernet.RelaxedArch``)."""

    kernel_probs: dict[int, torch.Tensor]
    width_index: dict[int, torch.Tensor]
    bit_index: dict


def _corner(x: torch.Tensor, n: int) -> tuple[int | torch.Tensor, torch.Tensor]:
    """Lower grid index and fraction of a continuous index x ∈ [0, n−1] (clamped)."""
    if n == 1:
        return 0, torch.zeros((), dtype=torch.float64, device=x.device)
    x = x.to(torch.float64).clamp(0, n - 1)
    i0 = x.detach().floor().clamp(max=n - 2)
    return i0.long(), x - i0


def interp3(grid: torch.Tensor, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Multilinear interpolation of ``grid`` ``[..., X, Y, Z]`` at continuous indices (x, y, z).

    Returns a tensor of shape ``grid.shape[:-3]``; exact at integer indices, with gradients
    to x, y and z through the fractional parts.
    """
    X, Y, Z = grid.shape[-3:]
    (i, fx), (j, fy), (k, fz) = _corner(x, X), _corner(y, Y), _corner(z, Z)
    out = torch.zeros(grid.shape[:-3], dtype=torch.float64, device=grid.device)
    for di, wx in ((0, 1 - fx), (1, fx)):
        if X == 1 and di:
            continue
        for dj, wy in ((0, 1 - fy), (1, fy)):
            if Y == 1 and dj:
                continue
            for dk, wz in ((0, 1 - fz), (1, fz)):
                if Z == 1 and dk:
                    continue
                out = out + wx * wy * wz * grid[..., i + di, j + dj, k + dk]
    return out


class ExpectedCost(nn.Module):
    """Expected latency (ms) and energy (mJ) of a relaxed architecture, from a cost table.

    Args:
        table: the cost table of ``space`` (checked against it).
        space: a ``dnas.space.SearchSpace``.
    """

    def __init__(self, table: CostTable, space: SearchSpace) -> None:
        super().__init__()
        table.check_space(space)
        self.space = space
        self._keys = []
        for i, cl in enumerate(space.costed_layers()):
            t = table.entries[cl.key]
            grid = torch.stack([t.latency_ms, t.energy_mj])  # [2, K, W, WB, AB]
            self.register_buffer(f"grid{i}", grid.to(torch.float64), persistent=False)
            self._keys.append(cl.key)

    def forward(self, relaxed: Relaxed) -> dict[str, torch.Tensor]:
        """Returns ``{"latency_ms": scalar, "energy_mj": scalar}`` (float64, differentiable)."""
        per_block: dict[int, torch.Tensor] = {}
        fixed = None
        for i, key in enumerate(self._keys):
            grid = getattr(self, f"grid{i}")
            bw, ba = relaxed.bit_index[key]
            if key.block < 0:
                # Fixed layer: singleton kernel and width axes.
                v = interp3(grid[:, 0], torch.zeros(()), bw, ba)  # [2]
                fixed = v if fixed is None else fixed + v
                continue
            theta = relaxed.width_index[key.block]
            v = interp3(grid, theta, bw, ba)  # [2, K]
            per_block[key.block] = v if key.block not in per_block else per_block[key.block] + v
        total = fixed if fixed is not None else torch.zeros(2, dtype=torch.float64)
        for block, v in per_block.items():
            # v: [2, K] over the block's real kernels (pointwise layers broadcast over K); the
            # kernel probabilities list those first and "skip" (which costs nothing) last.
            p = relaxed.kernel_probs[block].to(torch.float64)
            total = total + (v * p[: v.shape[1]]).sum(dim=1)
        return {"latency_ms": total[0], "energy_mj": total[1]}
