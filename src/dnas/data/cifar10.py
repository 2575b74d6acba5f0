"""CIFAR-10 (Krizhevsky, 2009) read from its Python batches into memory.

The batches are the "python version" of the data set: ``data_batch_1`` … ``data_batch_5`` and
``test_batch``, each a pickled dict with ``b"data"`` (a uint8 numpy array ``[N, 3072]``, the red,
green and blue 32×32 planes of each image) and ``b"labels"`` (N ints in 0..9). They are read from
a directory, its ``cifar-10-batches-py/`` subdirectory, or the ``cifar-10-python.tar.gz`` archive
they ship in (read in place, never extracted). Each pickle goes through a restricted unpickler that
builds numpy arrays and nothing else. Nothing is downloaded.
"""

from __future__ import annotations

import os
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnas.data.errors import DatasetError, DatasetNotFoundError
from dnas.data.loader import Batch, augment_batch
from dnas.data.module import TensorDataModule, check_limits, split_indices
from dnas.data.safe_pickle import UnsafePickleError, restricted_loads
from dnas.errors import DnasError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
BATCHES = (*TRAIN_BATCHES, TEST_BATCH)
SUBDIR = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
INSTALL_HINT = (
    f"Put the CIFAR-10 python batches ({', '.join(BATCHES)}) in that directory, or in its "
    f"{SUBDIR}/ subdirectory, or put the archive {ARCHIVE} there (from "
    "https://www.cs.toronto.edu/~kriz/cifar.html, 'CIFAR-10 python version'; it is read in "
    "place). Nothing is downloaded; set data.root=<directory>."
)
CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SHAPE = (3, 32, 32)
PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class CifarSource:
    """Where the six batches are: files in ``directory``, or members of the tar ``archive``.

    Attributes:
        directory: directory holding the batch files (``None`` when reading the archive).
        archive: the ``.tar.gz`` (``None`` when reading files).
        members: batch name → member name inside the archive.
    """

    directory: Path | None = None
    archive: Path | None = None
    members: tuple[tuple[str, str], ...] = ()

    def describe(self, batch: str) -> str:
        """The batch's location as a user would look for it."""
        if self.archive is not None:
            return f"{self.archive}:{dict(self.members)[batch]}"
        assert self.directory is not None
        return str(self.directory / batch)

    def read_bytes(self) -> dict[str, bytes]:
        """Every batch's raw pickle bytes.

        Raises:
            DatasetError: the archive cannot be read.
        """
        if self.directory is not None:
            return {b: (self.directory / b).read_bytes() for b in BATCHES}
        assert self.archive is not None
        wanted = {m: b for b, m in self.members}
        out: dict[str, bytes] = {}
        try:
            with tarfile.open(self.archive, "r:*") as tar:
                for member in tar:  # in archive order: one pass over the compressed stream
                    if member.name in wanted:
                        f = tar.extractfile(member)
                        if f is None:
                            raise DatasetError(f"{self.archive}:{member.name}: not a regular file")
                        out[wanted[member.name]] = f.read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DatasetError(f"{self.archive}: damaged archive ({e})") from e
        return out


def _archive_members(archive: Path) -> dict[str, str]:
    """Batch name → member name, for the batches the archive holds (any directory inside it)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            names = [m.name for m in tar.getmembers() if m.isfile()]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{archive}: damaged or not a tar archive ({e})") from e
    found: dict[str, str] = {}
    for name in names:
        base = name.rsplit("/", 1)[-1]
        if base in BATCHES and base not in found:
            found[base] = name
    return found


def find_batches(root: str | os.PathLike) -> CifarSource:
    """Locate the six batches under ``root``.

    Tried in order: ``root/<batch>``, ``root/cifar-10-batches-py/<batch>``, and the archive
    ``root/cifar-10-python.tar.gz`` (or ``root`` itself when it is a file).

    Raises:
        DatasetNotFoundError: no complete set of batches; the message names the missing files in
            each place tried and what to put there.
        DatasetError: the archive is damaged.
    """
    root = Path(root).expanduser()
    if root.is_file():
        archives = [root]
        dirs: list[Path] = []
    else:
        archives = [root / ARCHIVE]
        dirs = [root, root / SUBDIR]
    tried: list[str] = []
    for d in dirs:
        present = [b for b in BATCHES if (d / b).is_file()]
        if len(present) == len(BATCHES):
            return CifarSource(directory=d)
        if present:  # a partial set: say which are missing there
            missing = [str(d / b) for b in BATCHES if b not in present]
            tried.append(f"{d}: missing " + ", ".join(missing))
        elif d.is_dir():
            tried.append(f"{d}: no batch files")
    for a in archives:
        if a.is_file():
            members = _archive_members(a)
            if len(members) == len(BATCHES):
                return CifarSource(archive=a, members=tuple(members.items()))
            missing = [b for b in BATCHES if b not in members]
            tried.append(f"{a}: archive lacks " + ", ".join(missing))
        else:
            tried.append(f"{a}: no such archive")
    where = f"directory {root} does not exist" if not root.exists() else f"looked in {root}"
    raise DatasetNotFoundError(
        f"CIFAR-10 not found ({where}):\n  " + "\n  ".join(tried) + f"\n{INSTALL_HINT}"
    )


def _field(batch: dict, key: str) -> Any:
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise KeyError(key)


def parse_batch(raw: bytes, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch's pickle → images and labels, every field checked.

    Args:
        raw: the pickle's bytes.
        where: the batch's location, for error messages.

    Returns:
        ``(images [N, 3, 32, 32] uint8, labels [N] int64)``.

    Raises:
        DatasetError: unsafe or damaged pickle, missing keys, wrong dtype or shape, labels out of
            range; the message starts with ``where``.
    """
    try:
        batch = restricted_loads(raw)
    except UnsafePickleError as e:
        raise DatasetError(f"{where}: refused to load this pickle: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as e:
        raise DatasetError(f"{where}: damaged pickle ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{where}: expected a dict, the pickle holds {type(batch).__name__}")
    try:
        data, labels = _field(batch, "data"), _field(batch, "labels")
    except KeyError as e:
        keys = sorted(repr(k) for k in batch)
        raise DatasetError(f"{where}: no {e} entry (keys: {', '.join(keys)})") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        what = f"{data.dtype} array" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{where}: 'data' must be a uint8 array, got {what}")
    if data.ndim != 2 or data.shape[1] != PIXELS or data.shape[0] < 1:
        raise DatasetError(f"{where}: 'data' must have shape [N, {PIXELS}], got {data.shape}")
    if isinstance(labels, np.ndarray):
        labels = labels.tolist()
    if not isinstance(labels, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in labels
    ):
        raise DatasetError(f"{where}: 'labels' must be a list of ints")
    if len(labels) != len(data):
        raise DatasetError(f"{where}: {len(data)} images but {len(labels)} labels")
    bad = [v for v in labels if not 0 <= v < len(CLASS_NAMES)]
    if bad:
        raise DatasetError(f"{where}: label {bad[0]} out of range 0..{len(CLASS_NAMES) - 1}")
    images = torch.from_numpy(np.ascontiguousarray(data)).view(-1, *IMAGE_SHAPE)
    return images, torch.tensor(labels, dtype=torch.int64)


class CIFAR10DataModule(TensorDataModule):
    """CIFAR-10: 50k training and 10k test 32×32 colour images in 10 classes.

    Split like Fashion-MNIST: the training set into weight, architecture and optional validation
    splits (seeded), the test set kept for final evaluation (and validation unless
    ``val_fraction > 0``). Images are normalised per channel and held in memory as float32
    ``[N, 3, 32, 32]`` (about 600 MB for the full training set).

    Args:
        root: directory with the batches, their ``cifar-10-batches-py/`` subdirectory or the
            ``cifar-10-python.tar.gz`` archive (or the archive's path).
        batch_size: batch size of the weight and architecture loaders.
        eval_batch_size: batch size of the validation, test and recalibration loaders.
        arch_fraction: share of the training set for architecture steps (0: weights only).
        val_fraction: share of the training set held out for validation (0: validate on test).
        seed: seed of the split, of the subsets, of batch order and augmentation.
        augment: random crop (padding 4, black) and horizontal flip of weight-split batches,
            the usual CIFAR augmentation.
        mean: per-channel (RGB) mean of the pixels in [0, 1].
        std: per-channel standard deviation.
        limit_train: keep only this many training samples (the first after a seeded shuffle),
            before splitting.
        limit_test: keep only this many test samples (the first after a seeded shuffle).
        drop_last: drop the last incomplete batch of the training loaders.
    """

    class_names = CLASS_NAMES

    def __init__(
        self,
        root: str | os.PathLike,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        arch_fraction: float = 0.5,
        val_fraction: float = 0.0,
        seed: int = 0,
        augment: bool = False,
        mean: tuple[float, float, float] = (0.4914, 0.4822, 0.4465),
        std: tuple[float, float, float] = (0.2470, 0.2435, 0.2616),
        limit_train: int | None = None,
        limit_test: int | None = None,
        drop_last: bool = True,
    ) -> None:
        mean_t = torch.tensor([float(m) for m in mean])
        std_t = torch.tensor([float(s) for s in std])
        if mean_t.shape != (3,) or std_t.shape != (3,):
            raise DnasError(f"mean and std need 3 values (RGB), got {list(mean)}, {list(std)}")
        if (std_t <= 0).any():
            raise DnasError(f"std must be > 0, got {list(std)}")
        check_limits(limit_train, limit_test)
        super().__init__(
            num_classes=len(CLASS_NAMES),
            input_shape=IMAGE_SHAPE,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            arch_fraction=arch_fraction,
            val_fraction=val_fraction,
            seed=seed,
            augment=augment,
            drop_last=drop_last,
        )
        self.save_hyperparameters()
        self.root = Path(root).expanduser()
        self.mean = mean_t.view(3, 1, 1)
        self.std = std_t.view(3, 1, 1)
        self.limit_train = limit_train
        self.limit_test = limit_test
        self._raw: dict[str, Batch] | None = None

    def check(self) -> None:
        """Find and read every batch, checking each (about a second for the full data set).

        The pickles have no header to check cheaply, so they are read here, once: ``setup``
        reuses what was read.

        Raises:
            DatasetNotFoundError: the batches are not there (the message says where it looked
                and what to put there).
            DatasetError: a batch is damaged, of the wrong format, or refused as unsafe.
        """
        if self._splits is None:  # once loaded, there is nothing left to check
            self._read()

    def _read(self) -> dict[str, Batch]:
        if self._raw is not None:
            return self._raw
        source = find_batches(self.root)
        raw = source.read_bytes()
        parsed = {b: parse_batch(raw.pop(b), source.describe(b)) for b in BATCHES}
        self._raw = {
            "train": (
                torch.cat([parsed[b][0] for b in TRAIN_BATCHES]),
                torch.cat([parsed[b][1] for b in TRAIN_BATCHES]),
            ),
            "test": parsed[TEST_BATCH],
        }
        return self._raw

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, 3, 32, 32]`` → normalised float32 ``[N, 3, 32, 32]``."""
        x = images.to(torch.float32).mul_(1.0 / 255.0)
        return x.sub_(self.mean).div_(self.std)

    def _augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # Pad with black, whose normalised value differs per channel: shift it to 0 and back.
        black = (-self.mean / self.std).to(x.dtype)
        return augment_batch(x - black, generator, pad=4, flip=True, fill=0.0) + black

    def _load(self) -> dict[str, Batch]:
        raw = self._read()
        self._raw = None  # the normalised splits replace the uint8 copy
        train_images, train_labels = raw["train"]
        test_images, test_labels = raw["test"]
        self.split_indices = split_indices(
            len(train_labels),
            arch_fraction=self.arch_fraction,
            val_fraction=self.val_fraction,
            seed=self.seed,
            limit=self.limit_train,
        )
        splits: dict[str, Batch] = {
            name: (self._normalise(train_images[idx]), train_labels[idx])
            for name, idx in self.split_indices.items()
        }
        test_idx = torch.arange(len(test_labels))
        if self.limit_test is not None:
            gen = torch.Generator().manual_seed(self.seed)
            test_idx = torch.randperm(len(test_labels), generator=gen)[: self.limit_test]
        self.split_indices["test"] = test_idx
        splits["test"] = (self._normalise(test_images[test_idx]), test_labels[test_idx])
        if self.val_fraction == 0:
            splits["val"] = splits["test"]
        return splits
