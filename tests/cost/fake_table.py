"""Cost tables of a space's shape filled with chosen values: no cost model, built in milliseconds."""

from __future__ import annotations

from collections.abc import Callable

import torch

from dnas.cost.table import TABLE_FORMAT_VERSION, CostTable, LayerTable, TableHeader
from dnas.space import SearchSpace


def filled_table(
    space: SearchSpace, fill: Callable[[tuple[int, ...]], tuple[torch.Tensor, torch.Tensor]]
) -> CostTable:
    """A table whose (latency_ms, energy_mj) of each costed layer is ``fill(grid_shape)``."""
    entries = {}
    for cl in space.costed_layers():
        lat, en = fill(cl.grid_shape())
        entries[cl.key] = LayerTable(cl.kernels, cl.widths, cl.w_bits, cl.a_bits, lat, en)
    header = TableHeader(
        format_version=TABLE_FORMAT_VERSION,
        space_name=space.name,
        space_fingerprint=space.fingerprint(),
        hardware_name="fake",
        hardware_fingerprint="measured:fake",
        hardware={"measured": "fake"},
        source="measured",
        batch=1,
        code_version="test",
    )
    table = CostTable(header, entries)
    header.content_hash = table.compute_hash()
    return table


def random_table(space: SearchSpace, seed: int) -> CostTable:
    """Latency and energy drawn independently and uniformly from [0.01, 1.01) per grid point, so
    the fastest network is not the most frugal one."""
    g = torch.Generator().manual_seed(seed)

    def fill(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        draw = [torch.rand(shape, generator=g, dtype=torch.float64) + 0.01 for _ in range(2)]
        return draw[0], draw[1]

    return filled_table(space, fill)


def constant_table(space: SearchSpace, value: float) -> CostTable:
    """Every grid point costs ``value`` ms and ``value`` mJ: every choice ties."""

    def fill(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.full(shape, value, dtype=torch.float64)
        return t, t.clone()

    return filled_table(space, fill)
