"""CIFAR-10 from its python batches: every place they may be, their format, refused pickles, splits,
and a search on them with ``space=cifar_mbv2``."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from dnas.data import CIFAR10DataModule, DatasetError, DatasetNotFoundError, restricted_loads
from dnas.data.cifar10 import ARCHIVE, BATCHES, SUBDIR, TEST_BATCH, TRAIN_BATCHES
from tests.runs import SEARCH_BASE, compose_config

N_PER_BATCH = 8
MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1)


def fake_batch(seed: int, n: int = N_PER_BATCH) -> dict:
    """One batch as CIFAR ships it: bytes keys, uint8 [n, 3072] data, a list of int labels."""
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": f"batch {seed}".encode(),
        b"labels": [int((seed + i) % 10) for i in range(n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }


def fake_batches() -> dict[str, dict]:
    return {name: fake_batch(i) for i, name in enumerate(BATCHES)}


def write_cifar(root: Path, layout: str = "flat", batches: dict | None = None) -> Path:
    """The six batches under ``root``: as files (``flat``), in ``cifar-10-batches-py/``
    (``subdir``) or in ``cifar-10-python.tar.gz`` (``tar``)."""
    batches = batches if batches is not None else fake_batches()
    raw = {
        k: v if isinstance(v, bytes) else pickle.dumps(v, protocol=2) for k, v in batches.items()
    }
    root.mkdir(parents=True, exist_ok=True)
    if layout == "tar":
        with tarfile.open(root / ARCHIVE, "w:gz") as tar:
            for name, data in raw.items():
                info = tarfile.TarInfo(f"{SUBDIR}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return root
    where = root / SUBDIR if layout == "subdir" else root
    where.mkdir(exist_ok=True)
    for name, data in raw.items():
        (where / name).write_bytes(data)
    return root


def pixels(x: torch.Tensor) -> torch.Tensor:
    """Normalised images back to uint8 pixels."""
    return (x * STD + MEAN).mul(255).round().to(torch.uint8)


# -- format ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["flat", "subdir", "tar"])
def test_batches_round_trip_from_every_layout(tmp_path, layout):
    batches = fake_batches()
    root = write_cifar(tmp_path / "c", layout, batches)
    dm = CIFAR10DataModule(root=root, arch_fraction=0.5, val_fraction=0.0)
    dm.check()
    x, y = dm.split("test")  # in file order: no limit_test
    assert x.dtype == torch.float32 and x.shape == (N_PER_BATCH, 3, 32, 32)
    assert y.dtype == torch.int64 and y.tolist() == batches[TEST_BATCH][b"labels"]
    want = torch.from_numpy(batches[TEST_BATCH][b"data"]).view(-1, 3, 32, 32)
    assert torch.equal(pixels(x), want)  # planes are R, G, B of 32 rows of 32
    train = np.concatenate([batches[b][b"data"] for b in TRAIN_BATCHES])
    train_labels = [v for b in TRAIN_BATCHES for v in batches[b][b"labels"]]
    xw, yw = dm.split("weights")
    idx = dm.split_indices["weights"]
    assert torch.equal(pixels(xw), torch.from_numpy(train[idx.numpy()]).view(-1, 3, 32, 32))
    assert yw.tolist() == [train_labels[i] for i in idx]
    sizes = dm.split_sizes
    assert sizes["weights"] + sizes["arch"] == 5 * N_PER_BATCH and sizes["val"] == N_PER_BATCH
    assert dm.num_classes == 10 and dm.input_shape == (3, 32, 32)


def test_root_may_be_the_archive_itself(tmp_path):
    write_cifar(tmp_path, "tar")
    dm = CIFAR10DataModule(root=tmp_path / ARCHIVE)
    assert dm.split_sizes["test"] == N_PER_BATCH


def _op_str(b: bytes) -> bytes:  # SHORT_BINSTRING / BINSTRING: Python 2's str
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b


def _op_int(v: int) -> bytes:  # BININT1 / BININT
    return b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v)


def python2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """The batch as Python 2's cPickle wrote the real files (protocol 2, str as BINSTRING,
    numpy.core.multiarray._reconstruct), assembled opcode by opcode."""
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n"
        + b"cnumpy\nndarray\n"
        + _op_int(0)
        + b"\x85"  # TUPLE1: shape (0,)
        + _op_str(b"b")
        + b"\x87R"  # TUPLE3, REDUCE
        + b"("  # state: (1, shape, dtype, is_fortran, rawdata)
        + _op_int(1)
        + _op_int(data.shape[0])
        + _op_int(data.shape[1])
        + b"\x86"  # TUPLE2
        + b"cnumpy\ndtype\n"
        + _op_str(b"u1")
        + _op_int(0)
        + _op_int(1)
        + b"\x87R"
        + b"("
        + _op_int(3)
        + _op_str(b"|")
        + b"NNN"
        + _op_int(-1)
        + _op_int(-1)
        + _op_int(0)
        + b"tb"  # TUPLE, BUILD (dtype state)
        + b"\x89"  # NEWFALSE: not Fortran order
        + _op_str(data.tobytes())
        + b"tb"  # TUPLE, BUILD (array state)
    )
    items = b"".join(_op_int(v) for v in labels)
    return (
        b"\x80\x02}("
        + _op_str(b"data")
        + array
        + _op_str(b"labels")
        + b"]("
        + items
        + b"e"  # APPENDS
        + b"u."  # SETITEMS, STOP
    )


def test_python2_pickles_as_shipped_load(tmp_path):
    batches = fake_batches()
    raw = {k: python2_pickle(v[b"data"], v[b"labels"]) for k, v in batches.items()}
    assert (
        pickle.loads(raw[TEST_BATCH], encoding="bytes")[b"labels"] == batches[TEST_BATCH][b"labels"]
    )
    dm = CIFAR10DataModule(root=write_cifar(tmp_path / "c", "flat", raw))
    x, y = dm.split("test")
    assert y.tolist() == batches[TEST_BATCH][b"labels"]
    assert torch.equal(
        pixels(x).view(N_PER_BATCH, -1), torch.from_numpy(batches[TEST_BATCH][b"data"])
    )


# -- errors ---------------------------------------------------------------------------------------


def test_missing_root_says_which_files_to_put_there(tmp_path):
    root = tmp_path / "nowhere"
    dm = CIFAR10DataModule(root=root)
    for call in (dm.check, dm.prepare_data, dm.setup):
        with pytest.raises(DatasetNotFoundError) as e:
            call()
    msg = str(e.value)
    assert str(root) in msg and "does not exist" in msg
    for name in (*BATCHES, SUBDIR, ARCHIVE, "data.root=", "Nothing is downloaded"):
        assert name in msg, name


def test_a_missing_batch_is_named(tmp_path):
    root = write_cifar(tmp_path / "c", "subdir")
    (root / SUBDIR / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError) as e:
        CIFAR10DataModule(root=root).check()
    lines = [line.strip() for line in str(e.value).splitlines()]
    assert f"{root / SUBDIR}: missing {root / SUBDIR / 'data_batch_3'}" in lines


def test_an_archive_without_a_batch_is_named(tmp_path):
    batches = fake_batches()
    del batches[TEST_BATCH]
    write_cifar(tmp_path, "tar", batches)
    with pytest.raises(DatasetNotFoundError, match=r"archive lacks test_batch"):
        CIFAR10DataModule(root=tmp_path).check()


def test_a_damaged_archive_is_an_error(tmp_path):
    (tmp_path / ARCHIVE).write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    with pytest.raises(DatasetError, match=ARCHIVE):
        CIFAR10DataModule(root=tmp_path).check()


def _damaged(batch: dict, how: str) -> bytes | dict:
    if how == "truncated":
        return pickle.dumps(batch, protocol=2)[:-40]
    if how == "not a pickle":
        return b"hello, world"
    if how == "no labels":
        return {b"data": batch[b"data"]}
    if how == "float data":
        return {**batch, b"data": batch[b"data"].astype(np.float32)}
    if how == "short rows":
        return {**batch, b"data": batch[b"data"][:, :1024]}
    if how == "label count":
        return {**batch, b"labels": batch[b"labels"][:-1]}
    if how == "label range":
        return {**batch, b"labels": [10] * len(batch[b"labels"])}
    if how == "a list":
        return [1, 2, 3]  # type: ignore[return-value]
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how, match",
    [
        ("truncated", "damaged pickle"),
        ("not a pickle", "damaged pickle"),
        ("no labels", "no 'labels' entry"),
        ("float data", "must be a uint8 array, got float32"),
        ("short rows", r"shape \[N, 3072\]"),
        ("label count", "8 images but 7 labels"),
        ("label range", "label 10 out of range"),
        ("a list", "expected a dict"),
    ],
)
def test_damaged_batches_are_named(tmp_path, how, match):
    batches: dict = fake_batches()
    batches["data_batch_4"] = _damaged(batches["data_batch_4"], how)
    root = write_cifar(tmp_path / "c", "flat", batches)
    with pytest.raises(DatasetError, match=match) as e:
        CIFAR10DataModule(root=root).check()
    assert str(e.value).startswith(str(root / "data_batch_4"))


class _Payload:
    """Unpickling this calls ``func(*args)``: what a malicious data file would do."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("layout", ["flat", "tar"])
@pytest.mark.parametrize("func", [os.system, builtins.exec])
def test_a_malicious_pickle_is_refused_without_running(tmp_path, layout, func):
    marker = tmp_path / "pwned"
    command = f"touch {marker}" if func is os.system else f"open({str(marker)!r}, 'w')"
    batches: dict = fake_batches()
    batches["data_batch_2"] = {b"data": _Payload(func, command), b"labels": [0]}
    root = write_cifar(tmp_path / "c", layout, batches)
    with pytest.raises(DatasetError, match="refused to load this pickle: refused global") as e:
        CIFAR10DataModule(root=root).check()
    assert "data_batch_2" in str(e.value) and func.__name__ in str(e.value)
    assert not marker.exists()


def test_restricted_unpickler_refuses_object_arrays_and_odd_numpy_calls():
    with pytest.raises(pickle.UnpicklingError, match="dtype object"):
        restricted_loads(pickle.dumps(np.array([1, "a"], dtype=object)))
    reconstruct = np.arange(3).__reduce__()[0]  # numpy._core.multiarray._reconstruct
    evil_shape = pickle.dumps(_Payload(reconstruct, np.ndarray, (10**6,), b"b"))
    with pytest.raises(pickle.UnpicklingError, match="numpy pickles"):
        restricted_loads(evil_shape)
    for protocol in (2, 4, 5):  # numpy's own pickles at every protocol load
        a = np.arange(12, dtype=np.uint8).reshape(3, 4)
        assert np.array_equal(restricted_loads(pickle.dumps(a, protocol=protocol)), a)


# -- splits and augmentation ----------------------------------------------------------------------


def test_limits_and_fractions_split_the_training_set(tmp_path):
    root = write_cifar(tmp_path / "c")
    dm = CIFAR10DataModule(
        root=root, arch_fraction=0.5, val_fraction=0.25, limit_train=24, limit_test=5, seed=3
    )
    assert dm.split_sizes == {"weights": 9, "arch": 9, "val": 6, "test": 5}
    used = torch.cat([dm.split_indices[s] for s in ("weights", "arch", "val")])
    assert len(set(used.tolist())) == 24
    again = CIFAR10DataModule(
        root=root, arch_fraction=0.5, val_fraction=0.25, limit_train=24, limit_test=5, seed=3
    )
    assert torch.equal(again.split("arch")[0], dm.split("arch")[0])


def test_augmentation_pads_with_black_and_keeps_shape(tmp_path):
    dm = CIFAR10DataModule(root=write_cifar(tmp_path / "c"), augment=True, batch_size=8)
    x, _ = dm.split("weights")
    out = dm._augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    black = (-MEAN / STD).view(3)
    border = out.permute(0, 2, 3, 1).reshape(-1, 3)
    assert torch.isclose(border, black, atol=1e-6).all(1).any()  # some crop reaches the padding
    assert next(iter(dm.weight_loader()))[0].shape == (8, 3, 32, 32)


# -- configuration and a search -------------------------------------------------------------------


def test_config_selects_the_cifar_space_and_instantiates(tmp_path):
    root = write_cifar(tmp_path / "c")
    cfg = compose_config("search", "data=cifar10", f"data.root={root}")
    assert cfg.space.name == "cifar_mbv2"
    dm = instantiate(cfg.data)
    assert isinstance(dm, CIFAR10DataModule) and dm.split_sizes["test"] == N_PER_BATCH
    assert compose_config("search", "data=cifar10", "space=apq_mbv2").space.name == "apq_mbv2"


def test_bad_data_fails_before_the_cost_table(tmp_path, monkeypatch):
    from dnas.cli.search import run

    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    batches: dict = fake_batches()
    batches["data_batch_5"] = {b"data": _Payload(os.system, "true"), b"labels": [0]}
    root = write_cifar(tmp_path / "c", "flat", batches)
    for bad_root, error in ((tmp_path / "nowhere", DatasetNotFoundError), (root, DatasetError)):
        cfg = compose_config("search", "data=cifar10", f"data.root={bad_root}")
        with pytest.raises(error):
            run(cfg, output_dir=tmp_path / "run")
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_search_runs_on_cifar10(tmp_path, monkeypatch):
    from dnas.cli.search import run
    from dnas.space import Architecture

    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    root = write_cifar(tmp_path / "c")
    out = tmp_path / "run"
    overrides = [o for o in SEARCH_BASE if not o.startswith("data")]
    cfg = compose_config(
        "search",
        *overrides,
        "data=cifar10",
        f"data.root={root}",
        "space=cifar_mbv2",
        "space.kernels=[3,5]",  # a smaller grid: a table quick to build
        "space.bits=[4,8]",
        "data.batch_size=8",
        "data.eval_batch_size=8",
        "data.val_fraction=0",
        "data.augment=true",
        "target.latency_frac=0.3",
        f"hydra.runtime.output_dir={out}",
    )
    acc = run(cfg, output_dir=out)
    arch = Architecture.load(out / "arch.yaml")
    assert arch.metrics["test_acc"] == acc  # what the run returns is the derived network's
    assert arch.space == "cifar_mbv2"
    assert arch.metrics["latency_ms"] <= arch.metrics["target_latency_ms"] * (1 + 1e-12)
