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
import sys
from typing import Any

import torch

# Triton builds its standard library (tl.max, tl.cdiv, ...) when it is first imported, as compiled
# or as interpreted functions depending on TRITON_INTERPRET at that moment; a kernel defined later
# under the interpreter cannot call compiled ones. So the variable only helps if triton is not
# imported yet: remember whether it was, to refuse clearly instead of failing inside a kernel.
_LATE = False
if not torch.cuda.is_available() and "TRITON_INTERPRET" not in os.environ:
    _LATE = "triton" in sys.modules
    os.environ["TRITON_INTERPRET"] = "1"

__all__ = ["available", "bitfusion_cost"]


def interpreted() -> bool:
    """True when triton kernels run under the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


def _stdlib_interpreted() -> bool:
    """Whether triton's standard library was built for the interpreter (see the note above)."""
    import triton.language.standard as std

    return type(std.cdiv).__name__ == "InterpretedFunction"


def available() -> bool:
    """True if triton imports and kernels can run: on a CUDA GPU or under the interpreter."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    if torch.cuda.is_available():
        return True
    return interpreted() and not _LATE and _stdlib_interpreted()


def unavailable_reason() -> str:
    """Why ``available()`` is False (empty when it is True)."""
    if available():
        return ""
    if _LATE or (interpreted() and not _stdlib_interpreted()):
        return (
            "triton was imported before dnas_kernels without TRITON_INTERPRET=1, so its CPU "
            "interpreter is off: set TRITON_INTERPRET=1 before anything imports triton"
        )
    try:
        import triton  # noqa: F401
    except ImportError:
        return "the `triton` package is not installed"
    return "no CUDA GPU, and TRITON_INTERPRET is not 1"


def __getattr__(name: str) -> Any:
    if name == "bitfusion_cost":
        if not available():
            raise RuntimeError(f"the Triton kernels cannot run here: {unavailable_reason()}")
        from dnas_kernels.bitfusion import bitfusion_cost

        return bitfusion_cost
    raise AttributeError(f"module 'dnas_kernels' has no attribute {name!r}")
