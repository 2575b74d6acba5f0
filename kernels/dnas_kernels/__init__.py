"""Triton kernels of dnas (top-level package ``dnas_kernels``).

Importing this package on a machine without a CUDA GPU sets ``TRITON_INTERPRET=1`` (unless the
variable is already set) *before* triton is imported, so that every kernel defined afterwards runs
under Triton's CPU interpreter. Triton reads the variable when a kernel is decorated, so anything that
imports triton kernels directly must import ``dnas_kernels`` first (or set the variable itself).

Public API:
    available: whether the kernels can run here (triton importable, and a GPU or the interpreter).
    bitfusion_cost: the BitFusion per-layer schedule search (see ``dnas_kernels.bitfusion``),
        imported lazily so that ``import dnas_kernels`` works where triton is missing.
"""

from __future__ import annotations

import os
from typing import Any

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

__all__ = ["available", "bitfusion_cost"]


def interpreted() -> bool:
    """True when triton kernels run under the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


def available() -> bool:
    """True if triton imports and kernels can run: on a CUDA GPU or under the interpreter."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() or interpreted()


def __getattr__(name: str) -> Any:
    if name == "bitfusion_cost":
        from dnas_kernels.bitfusion import bitfusion_cost

        return bitfusion_cost
    raise AttributeError(f"module 'dnas_kernels' has no attribute {name!r}")
