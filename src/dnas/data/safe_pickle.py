"""A restricted unpickler for data files: plain containers and numpy arrays, nothing else.

``pickle.load`` calls whatever a file names (``os.system``, ``builtins.eval``, …), so loading a
pickle is running code. The CIFAR batches are pickles of a dict holding a numpy array, so this
unpickler resolves only the few globals numpy's own pickles use to rebuild an array (each checked
when called) and refuses every other global before anything runs.
"""

from __future__ import annotations

import codecs
import io
import math
import pickle
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

try:  # numpy >= 2 keeps its internals in numpy._core (numpy.core is a deprecated alias)
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that names a global outside the allowed set (it would run arbitrary code)."""


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` inside a pickle: accepted only as ``_reconstruct``'s subtype,
    so a file cannot call the constructor itself."""


_NDARRAY = _NdarrayClass()


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    dtype = np.dtype(spec, bool(align), bool(copy))
    if dtype.hasobject:
        raise UnsafePickleError(f"refused numpy dtype {dtype}: arrays of Python objects")
    return dtype


def _reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    # numpy pickles an array as _reconstruct(ndarray, (0,), b"b") plus a __setstate__ that sets
    # the real shape, dtype and bytes: anything else is not one of numpy's own pickles.
    if subtype is not _NDARRAY:
        raise UnsafePickleError(f"refused _reconstruct of {subtype!r}: only numpy.ndarray")
    if not isinstance(shape, tuple) or math.prod(shape) != 0:
        raise UnsafePickleError(f"refused _reconstruct with shape {shape!r}: numpy pickles (0,)")
    return _multiarray._reconstruct(np.ndarray, shape, _dtype(dtype_code))


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError(f"refused _frombuffer with dtype {dtype!r}")
    return _numeric._frombuffer(buffer, dtype, shape, order)


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # Python 3 writes bytes as _codecs.encode(str, "latin1") at protocols < 3.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refused _codecs.encode({text!r:.40}, {encoding!r})")
    return codecs.encode(text, "latin1")


# (module, name) as written in the pickle -> what it resolves to. Both spellings of numpy's
# modules: the real batches were written by numpy 1.x (numpy.core), a new pickle by numpy 2.x.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only ``ALLOWED_GLOBALS``.

    Without globals a pickle can only build ``None``, bools, numbers, ``str``, ``bytes``, tuples,
    lists, dicts and sets; with them, numpy arrays of non-object dtypes.
    """

    def find_class(self, module: str, name: str) -> Callable[..., Any]:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused global {module}.{name}: only numpy array reconstruction is allowed "
                "(a data file has no reason to name anything else)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused a persistent id: data pickles do not use them")


def restricted_loads(data: bytes | BinaryIO, encoding: str = "bytes") -> Any:
    """Unpickle ``data`` allowing only containers, scalars, strings and numpy arrays.

    Args:
        data: the pickle, as bytes or a binary file.
        encoding: how Python 2 ``str`` objects are decoded; ``"bytes"`` keeps them as bytes (the
            CIFAR batches' keys are then ``b"data"`` and ``b"labels"``).

    Returns:
        The unpickled object.

    Raises:
        UnsafePickleError: the pickle names a global outside ``ALLOWED_GLOBALS`` (refused before
            it is called) or a numpy construction numpy itself never pickles.
        pickle.UnpicklingError, EOFError, ValueError, TypeError: a damaged pickle.
    """
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    return RestrictedUnpickler(f, encoding=encoding).load()
