"""Batch-norm recalibration: re-estimate running statistics for the architecture a model runs.

Weight sharing leaves the running statistics of a sub-network stale (they were averaged over
whichever sub-networks ran), so they are re-estimated before evaluation, as in once-for-all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[Any], num_batches: int) -> int:
    """Reset every BN's running statistics and re-estimate them as a cumulative average.

    The model runs in train mode (batch statistics) without gradients on up to ``num_batches``
    batches; its train/eval state and BN momenta are restored afterwards.

    Args:
        model: any module with BN layers (a ``SuperNet`` in its current mode, a ``ChildNet``).
        batches: iterable of input tensors ``[B, C, H, W]`` or of ``(inputs, ...)`` tuples/lists.
        num_batches: how many batches to use (≥ 1).

    Returns:
        The number of batches used (fewer if ``batches`` ran out).
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in bns]
    was_training = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches seen
    model.train()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    used = 0
    try:
        for batch in batches:
            if used >= num_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x.to(device))
            used += 1
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        model.train(was_training)
    return used


def _bn_modules(model: nn.Module) -> dict[str, _BatchNorm]:
    return {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats
    }


def bn_statistics(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every BN's running statistics (``running_mean``, ``running_var``,
    ``num_batches_tracked``), keyed like the state dict."""
    out = {}
    for name, m in _bn_modules(model).items():
        for buf in ("running_mean", "running_var", "num_batches_tracked"):
            out[f"{name}.{buf}" if name else buf] = getattr(m, buf).detach().clone()
    return out


@torch.no_grad()
def load_bn_statistics(model: nn.Module, stats: dict[str, torch.Tensor]) -> None:
    """Put back statistics taken by ``bn_statistics`` (same model structure)."""
    for name, m in _bn_modules(model).items():
        for buf in ("running_mean", "running_var", "num_batches_tracked"):
            getattr(m, buf).copy_(stats[f"{name}.{buf}" if name else buf])
