"""IDX files: round trips (plain and gzip, detected by magic bytes) and damaged files refused."""

from __future__ import annotations

import gzip
import struct

import pytest
import torch

from dnas.data import DatasetError, read_idx, read_idx_header, write_idx


def sample(*shape: int) -> torch.Tensor:
    return torch.randint(
        0, 256, shape, generator=torch.Generator().manual_seed(1), dtype=torch.uint8
    )


@pytest.mark.parametrize("shape", [(7,), (5, 4, 3), (2, 3, 4, 5)])
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip(tmp_path, shape, compress):
    t = sample(*shape)
    path = write_idx(tmp_path / "f-idx", t, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    back = read_idx(path)
    assert back.dtype == torch.uint8
    assert torch.equal(back, t)
    header = read_idx_header(path)
    assert header.shape == shape and header.dtype_code == 0x08


def test_compression_is_detected_by_content_not_name(tmp_path):
    t = sample(3, 4)
    gz_named_plain = write_idx(tmp_path / "a.gz", t, compress=False)
    plain_named_gz = write_idx(tmp_path / "b-idx2-ubyte", t, compress=True)
    assert torch.equal(read_idx(gz_named_plain), t)
    assert torch.equal(read_idx(plain_named_gz), t)


def test_header_layout_is_the_mnist_one(tmp_path):
    path = write_idx(tmp_path / "x", sample(2, 3), compress=False)
    raw = path.read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x02"
    assert struct.unpack(">II", raw[4:12]) == (2, 3)
    assert len(raw) == 12 + 6


def refused(path, *words: str, **kw) -> DatasetError:
    with pytest.raises(DatasetError) as e:
        read_idx(path, **kw)
    msg = str(e.value)
    assert msg.startswith(str(path)), msg
    for w in words:
        assert w in msg, msg
    return e.value


def test_truncated_plain_file(tmp_path):
    path = write_idx(tmp_path / "t", sample(10, 4), compress=False)
    path.write_bytes(path.read_bytes()[:-5])
    refused(path, "truncated", "(10, 4)", "40 data bytes", "35")


def test_trailing_bytes(tmp_path):
    path = write_idx(tmp_path / "t", sample(10), compress=False)
    path.write_bytes(path.read_bytes() + b"\x00")
    refused(path, "trailing bytes")


def test_truncated_gzip_file(tmp_path):
    path = write_idx(tmp_path / "t.gz", sample(50, 50), compress=True)
    path.write_bytes(path.read_bytes()[:-40])
    refused(path, "gzip")


def test_gzip_of_a_truncated_idx_file(tmp_path):
    raw = write_idx(tmp_path / "ok", sample(10, 4), compress=False).read_bytes()
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(raw[:-1]))
    refused(path, "truncated", "decompressed")


def test_corrupt_gzip_stream(tmp_path):
    path = write_idx(tmp_path / "t.gz", sample(64, 64), compress=True)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    refused(path, "gzip")


def test_wrong_magic(tmp_path):
    path = write_idx(tmp_path / "m", sample(4), compress=False)
    path.write_bytes(b"\x01\x02" + path.read_bytes()[2:])
    refused(path, "bad magic number", "0x0102")


def test_png_is_not_idx(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    refused(path, "bad magic number")


@pytest.mark.parametrize(
    ("code", "words"), [(0x0D, ("0x0d", "float32", "only 0x08")), (0x07, ("unknown",))]
)
def test_unsupported_or_unknown_dtype(tmp_path, code, words):
    path = tmp_path / "d"
    path.write_bytes(struct.pack(">HBBI", 0, code, 1, 2) + b"\x00" * 8)
    refused(path, *words)


def test_too_short_and_zero_dimensions(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    refused(empty, "too short")
    zero = tmp_path / "zero"
    zero.write_bytes(b"\x00\x00\x08\x00")
    refused(zero, "0 dimensions")
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x03" + b"\x00\x00\x00\x01")
    refused(short, "truncated header")


def test_wrong_number_of_dimensions(tmp_path):
    path = write_idx(tmp_path / "labels", sample(10), compress=False)
    refused(path, "expected 3 dimensions", ndim=3)


def test_header_reader_refuses_damage_too(tmp_path):
    path = tmp_path / "m"
    path.write_bytes(b"\xff\xff\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(DatasetError, match="bad magic"):
        read_idx_header(path)


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


def test_write_refuses_other_dtypes(tmp_path):
    with pytest.raises(TypeError, match="uint8"):
        write_idx(tmp_path / "f", torch.zeros(3))
