"""Backend dispatch: evaluate many layers with the PyTorch reference or the Triton kernel."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence

import torch

from dnas.cost.batch import PARAM_COLUMNS, CostBatch, layers_to_params
from dnas.cost.hardware import BitFusionConfig
from dnas.cost.layer import LayerShape
from dnas.cost.vectorized import bitfusion_cost_torch
from dnas.errors import DnasError

BACKENDS = ("auto", "torch", "triton")


def triton_available() -> bool:
    """True when the Triton kernel can run: triton is installed (GPU or ``TRITON_INTERPRET=1``)."""
    if importlib.util.find_spec("triton") is None:
        return False
    import dnas_kernels  # deferred: importing dnas must never import triton

    return dnas_kernels.available()


class BackendUnavailable(DnasError, RuntimeError):
    """A cost backend this machine cannot run (``triton`` without Triton or a GPU): the user's
    setting to change, one line (a ``RuntimeError`` too, as it was)."""


def resolve_backend(name: str) -> str:
    """``auto`` → ``triton`` on a CUDA machine with Triton, else ``torch``.

    Every command calls it on its backend setting before a table is looked up, so a backend
    that is not one of ``BACKENDS`` or cannot run here is refused even when the table is cached.

    Raises:
        DnasError: an unknown name; ``BackendUnavailable``: ``triton`` cannot run here.
    """
    if name not in BACKENDS:
        raise DnasError(f"unknown cost backend {name!r}; allowed: {', '.join(BACKENDS)}")
    if name == "auto":
        return "triton" if torch.cuda.is_available() and triton_available() else "torch"
    if name == "triton" and not triton_available():
        reason = "the `triton` package is not installed"
        if importlib.util.find_spec("triton") is not None:
            import dnas_kernels

            reason = dnas_kernels.unavailable_reason()
        raise BackendUnavailable(
            f"the triton cost backend cannot run: {reason}. It needs triton (>=3.2) and a CUDA "
            "GPU, or TRITON_INTERPRET=1 on the CPU; use --backend torch otherwise (dnas-lut "
            "backend=torch, table.backend=torch in the training commands)"
        )
    return name


def _backend_fn(name: str) -> Callable:
    if name == "triton":
        from dnas_kernels import bitfusion_cost

        return bitfusion_cost
    return bitfusion_cost_torch


def evaluate(
    layers: Sequence[LayerShape] | torch.Tensor,
    hw: BitFusionConfig | None = None,
    backend: str = "auto",
    chunk: int = 4096,
    progress: Callable[[int], None] | None = None,
) -> CostBatch:
    """Best BitFusion schedules of many layers.

    Args:
        layers: layer shapes, or an ``[n, 10]`` int64 tensor of ``PARAM_COLUMNS``.
        hw: hardware configuration (default: the published BitFusion).
        backend: ``auto``, ``torch`` or ``triton``.
        chunk: layers handed to the backend at once (bounds memory).
        progress: called with the number of layers finished after each chunk.

    Returns:
        A CostBatch; rows that no tiling fits hold -1 (see ``CostBatch.infeasible``).
    """
    hw = hw or BitFusionConfig()
    params = layers if isinstance(layers, torch.Tensor) else layers_to_params(layers)
    if params.ndim != 2 or params.shape[1] != len(PARAM_COLUMNS):
        raise DnasError(f"params must be [n, {len(PARAM_COLUMNS)}], got {tuple(params.shape)}")
    bits = params[:, [PARAM_COLUMNS.index("w_bits"), PARAM_COLUMNS.index("a_bits")]]
    if params.numel() and int(bits.max()) > hw.pmax_bits:
        row = int(torch.nonzero((bits > hw.pmax_bits).any(1))[0])
        raise DnasError(f"layer {row}: bits above the hardware's pmax_bits={hw.pmax_bits}")
    fn = _backend_fn(resolve_backend(backend))
    outs = []
    for start in range(0, params.shape[0], chunk):
        outs.append(fn(params[start : start + chunk], hw))
        if progress is not None:
            progress(min(chunk, params.shape[0] - start))
    if not outs:
        empty = torch.zeros((0, 11), dtype=torch.int64)
        return CostBatch(params, empty, torch.zeros((0, 4), dtype=torch.int64), empty[:, 0])
    counters, tiles, order = (torch.cat(x) for x in zip(*outs))
    return CostBatch(params, counters, tiles, order)


def cost_named_layers(
    named: Sequence[tuple[str, LayerShape]], hw: BitFusionConfig, backend: str = "auto"
) -> dict[str, list]:
    """Per-layer BitFusion costs of named layers, checked first: ``latency_ms``, ``energy_mj``,
    ``cycles``, ``compute_cycles`` and ``mem_stall_cycles``, one list entry per layer in order
    (``dnas-cost arch`` and ``dnas.cost.graph.graph_cost`` both read these).

    Raises:
        DnasError: a bit-width ``hw`` does not run, or a layer no tiling of its buffers fits
            (naming the layer).
    """
    from dnas.cost.table import _NJ_PER_MJ

    for name, s in named:
        try:
            s.check_bits(hw)
        except ValueError as e:
            raise DnasError(f"layer {name} on hardware {hw.name!r}: {e}") from None
    res = evaluate([s for _, s in named], hw, backend)
    bad = res.infeasible.nonzero().flatten().tolist()
    if bad:
        name, shape = named[bad[0]]
        raise DnasError(
            f"{len(bad)} layer(s) fit no tiling of hardware {hw.name!r}'s buffers, e.g. "
            f"{name} ({shape}); enlarge the buffers"
        )
    return {
        "latency_ms": res.latency_ms(hw).tolist(),
        "energy_mj": (res.energies_nj(hw)["total"] / _NJ_PER_MJ).tolist(),
        "cycles": res.column("cycles").tolist(),
        "compute_cycles": res.column("compute_cycles").tolist(),
        "mem_stall_cycles": res.column("mem_stall_cycles").tolist(),
    }
