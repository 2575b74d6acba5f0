"""Fashion-MNIST (Xiao et al., 2017) read from its four IDX files into memory.

The files come from the Debian package ``dataset-fashion-mnist`` (installed under
``/usr/share/datasets/fashion-mnist``) or any directory holding the same names, plain or gzipped.
Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dnas.data.errors import DatasetError, DatasetNotFoundError
from dnas.data.idx import read_idx, read_idx_header
from dnas.data.loader import Batch
from dnas.data.module import TensorDataModule, check_limits, split_indices
from dnas.errors import DnasError

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
INSTALL_HINT = (
    "Install it with `apt-get install -y dataset-fashion-mnist` (files land in "
    f"{DEFAULT_ROOT}), or set data.root=<directory holding the IDX files>."
)
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGE_SHAPE = (28, 28)


def find_files(root: str | os.PathLike) -> dict[str, Path]:
    """Locate the four IDX files in ``root``, each as ``<name>`` or ``<name>.gz``.

    Args:
        root: directory holding the files.

    Returns:
        ``{"train_images": path, "train_labels": path, "test_images": path, "test_labels": path}``.

    Raises:
        DatasetNotFoundError: a file is missing; the message lists every path tried and how to
            install the data set.
    """
    root = Path(root).expanduser()
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, name in FILES.items():
        candidates = [root / name, root / f"{name}.gz"]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            missing.append(" or ".join(str(c) for c in candidates))
        else:
            found[key] = hit
    if missing:
        where = f"directory {root} does not exist" if not root.is_dir() else f"looked in {root}"
        raise DatasetNotFoundError(
            f"Fashion-MNIST not found ({where}); missing:\n  "
            + "\n  ".join(missing)
            + f"\n{INSTALL_HINT}"
        )
    return found


def _check_pair(images: Path, labels: Path, image_shape: tuple, label_shape: tuple) -> None:
    if len(image_shape) != 3 or tuple(image_shape[1:]) != IMAGE_SHAPE:
        raise DatasetError(
            f"{images}: expected images of shape [N, 28, 28], the header declares {image_shape}"
        )
    if len(label_shape) != 1:
        raise DatasetError(
            f"{labels}: expected labels of shape [N], the header declares {label_shape}"
        )
    if image_shape[0] != label_shape[0]:
        raise DatasetError(
            f"{images} holds {image_shape[0]} images but {labels} holds {label_shape[0]} labels"
        )


class FashionMNISTDataModule(TensorDataModule):
    """Fashion-MNIST: 60k training and 10k test 28×28 grey images in 10 classes.

    The training set is split (seeded) into a weight split and an architecture split, and
    optionally a validation hold-out; the 10k test set is kept for final evaluation and, unless
    ``val_fraction > 0``, also serves as the validation set for monitoring. Images are normalised
    to ``(pixel / 255 − mean) / std`` and held in memory as float32 ``[N, 1, 28, 28]``.

    Args:
        root: directory with ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
            ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``).
        batch_size: batch size of the weight and architecture loaders.
        eval_batch_size: batch size of the validation, test and recalibration loaders.
        arch_fraction: share of the training set for architecture steps (0: weights only).
        val_fraction: share of the training set held out for validation (0: validate on test).
        seed: seed of the split, of the subsets, of batch order and augmentation. It is the data
            module's own, so changing the training seed keeps the same split.
        augment: random crop (padding 2) and horizontal flip of weight-split batches.
        mean: mean of the pixels in [0, 1] used for normalisation.
        std: standard deviation used for normalisation.
        limit_train: keep only this many training samples (the first after a seeded shuffle),
            before splitting.
        limit_test: keep only this many test samples (the first after a seeded shuffle).
        drop_last: drop the last incomplete batch of the training loaders.
    """

    class_names = CLASS_NAMES

    def __init__(
        self,
        root: str | os.PathLike = DEFAULT_ROOT,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        arch_fraction: float = 0.5,
        val_fraction: float = 0.0,
        seed: int = 0,
        augment: bool = False,
        mean: float = 0.2860,
        std: float = 0.3530,
        limit_train: int | None = None,
        limit_test: int | None = None,
        drop_last: bool = True,
    ) -> None:
        if std <= 0:
            raise DnasError(f"std must be > 0, got {std}")
        check_limits(limit_train, limit_test)
        super().__init__(
            num_classes=10,
            input_shape=(1, *IMAGE_SHAPE),
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            arch_fraction=arch_fraction,
            val_fraction=val_fraction,
            seed=seed,
            augment=augment,
            drop_last=drop_last,
            pad_value=-mean / std,
        )
        self.save_hyperparameters()
        self.root = Path(root).expanduser()
        self.mean = float(mean)
        self.std = float(std)
        self.limit_train = limit_train
        self.limit_test = limit_test

    def check(self) -> None:
        """Check that the four files exist and that their headers agree (reads only headers).

        Raises:
            DatasetNotFoundError: a file is missing (the message says where it looked and how to
                install the data set).
            DatasetError: a header is damaged or the shapes do not match.
        """
        files = find_files(self.root)
        for split in ("train", "test"):
            images, labels = files[f"{split}_images"], files[f"{split}_labels"]
            _check_pair(
                images, labels, read_idx_header(images).shape, read_idx_header(labels).shape
            )

    def _read(self, files: dict[str, Path], split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images_path, labels_path = files[f"{split}_images"], files[f"{split}_labels"]
        images = read_idx(images_path, ndim=3)
        labels = read_idx(labels_path, ndim=1)
        _check_pair(images_path, labels_path, tuple(images.shape), tuple(labels.shape))
        if len(labels) and int(labels.max()) >= self.num_classes:
            raise DatasetError(
                f"{labels_path}: label {int(labels.max())} out of range 0..{self.num_classes - 1}"
            )
        return images, labels

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, 28, 28]`` → normalised float32 ``[N, 1, 28, 28]``."""
        x = images.unsqueeze(1).to(torch.float32)
        return x.mul_(1.0 / 255.0).sub_(self.mean).div_(self.std)

    def _load(self) -> dict[str, Batch]:
        files = find_files(self.root)
        train_images, train_labels = self._read(files, "train")
        test_images, test_labels = self._read(files, "test")
        self.split_indices = split_indices(
            len(train_labels),
            arch_fraction=self.arch_fraction,
            val_fraction=self.val_fraction,
            seed=self.seed,
            limit=self.limit_train,
        )
        splits: dict[str, Batch] = {
            name: (self._normalise(train_images[idx]), train_labels[idx].long())
            for name, idx in self.split_indices.items()
        }
        test_idx = torch.arange(len(test_labels))
        if self.limit_test is not None:
            gen = torch.Generator().manual_seed(self.seed)
            test_idx = torch.randperm(len(test_labels), generator=gen)[: self.limit_test]
        self.split_indices["test"] = test_idx
        splits["test"] = (self._normalise(test_images[test_idx]), test_labels[test_idx].long())
        if self.val_fraction == 0:
            splits["val"] = splits["test"]
        return splits
