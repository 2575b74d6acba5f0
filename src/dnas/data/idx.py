"""Reader and writer of IDX files (the MNIST format), plain or gzip-compressed.

The format (http://yann.lecun.com/exdb/mnist/): a 4-byte magic number ``00 00 <dtype> <ndim>``,
``ndim`` big-endian uint32 sizes, then the row-major data. Compression is detected from the gzip
magic bytes, never from the file name, and every length is checked against the header so a
truncated or padded file is refused instead of being silently reshaped.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from dnas.data.errors import DatasetError
from dnas.errors import DnasError

GZIP_MAGIC = b"\x1f\x8b"
UINT8_CODE = 0x08
# Every dtype code the format defines; only uint8 is read (all of MNIST and Fashion-MNIST).
DTYPE_NAMES = {
    0x08: "uint8",
    0x09: "int8",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}


@dataclass(frozen=True)
class IdxHeader:
    """The header of an IDX file.

    Attributes:
        dtype_code: the third magic byte (``0x08`` for uint8).
        shape: the size of each dimension, outermost first.
    """

    dtype_code: int
    shape: tuple[int, ...]

    @property
    def header_bytes(self) -> int:
        """Length of the header: 4 magic bytes plus 4 bytes per dimension."""
        return 4 + 4 * len(self.shape)

    @property
    def data_bytes(self) -> int:
        """Length of the data the header promises (uint8: one byte per element)."""
        return math.prod(self.shape)


def _fail(path: str | os.PathLike, what: str) -> DatasetError:
    return DatasetError(f"{path}: {what}")


def is_gzip(path: str | os.PathLike) -> bool:
    """Whether the file starts with the gzip magic bytes ``1f 8b`` (whatever its name)."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _parse_header(path: str | os.PathLike, raw: bytes) -> IdxHeader:
    if len(raw) < 4:
        raise _fail(path, f"{len(raw)} bytes, too short for an IDX header (4 magic bytes)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0:
        raise _fail(
            path,
            f"bad magic number 0x{raw[:4].hex()}: an IDX file starts with two zero bytes "
            "(is this an IDX file?)",
        )
    if code not in DTYPE_NAMES:
        raise _fail(path, f"unknown IDX dtype code 0x{code:02x} (known: 0x08, 0x09, 0x0b-0x0e)")
    if code != UINT8_CODE:
        raise _fail(
            path,
            f"IDX dtype code 0x{code:02x} ({DTYPE_NAMES[code]}) is not supported: "
            "only 0x08 (uint8) is read",
        )
    if ndim == 0:
        raise _fail(path, "IDX header declares 0 dimensions")
    if len(raw) < 4 + 4 * ndim:
        raise _fail(
            path,
            f"truncated header: {ndim} dimensions need {4 + 4 * ndim} bytes, file has {len(raw)}",
        )
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return IdxHeader(code, tuple(int(s) for s in shape))


def _open(path: Path):
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def read_idx_header(path: str | os.PathLike) -> IdxHeader:
    """Read and validate only the header of an IDX file (cheap, even when compressed).

    Args:
        path: the IDX file, plain or gzip-compressed.

    Returns:
        The validated header.

    Raises:
        DatasetError: the file is not a readable uint8 IDX file.
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    try:
        with _open(path) as f:
            head = f.read(4)
            if len(head) == 4:
                head += f.read(4 * head[3])
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise _fail(path, f"corrupt gzip stream: {e}") from e
    return _parse_header(path, head)


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> torch.Tensor:
    """Read a uint8 IDX file into a tensor.

    Args:
        path: the IDX file, plain or gzip-compressed (detected from its magic bytes).
        ndim: if given, the number of dimensions the file must have.

    Returns:
        A uint8 tensor of the header's shape, e.g. ``[N, 28, 28]`` for images or ``[N]`` for labels.

    Raises:
        DatasetError: bad magic number, unsupported dtype, wrong number of dimensions, a corrupt
            gzip stream, or a data length that does not match the header. The message starts with
            the file's path.
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    compressed = is_gzip(path)
    raw = path.read_bytes()
    if compressed:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise _fail(path, f"corrupt or truncated gzip stream: {e}") from e
    header = _parse_header(path, raw)
    if ndim is not None and len(header.shape) != ndim:
        raise _fail(path, f"expected {ndim} dimensions, the header declares shape {header.shape}")
    found = len(raw) - header.header_bytes
    if found != header.data_bytes:
        kind = "truncated" if found < header.data_bytes else "trailing bytes"
        raise _fail(
            path,
            f"{kind}: the header declares shape {header.shape} ({header.data_bytes} data bytes) "
            f"but the {'decompressed ' if compressed else ''}file holds {found} data bytes",
        )
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=header.header_bytes)
    return data.reshape(header.shape)


def write_idx(path: str | os.PathLike, tensor: torch.Tensor, compress: bool | None = None) -> Path:
    """Write a uint8 tensor as an IDX file.

    Args:
        path: where to write.
        tensor: uint8 tensor with at least one dimension.
        compress: gzip the file; ``None`` compresses when the name ends with ``.gz``.

    Returns:
        The path written.
    """
    path = Path(path)
    if tensor.dtype != torch.uint8:
        raise TypeError(f"write_idx writes uint8 tensors, got {tensor.dtype}")
    if tensor.dim() == 0 or tensor.dim() > 255:
        raise DnasError(f"an IDX file holds 1 to 255 dimensions, got {tensor.dim()}")
    header = struct.pack(">HBB", 0, UINT8_CODE, tensor.dim())
    header += struct.pack(f">{tensor.dim()}I", *tensor.shape)
    raw = header + tensor.contiguous().cpu().numpy().tobytes()
    if compress is None:
        compress = path.name.endswith(".gz")
    path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)
    return path
