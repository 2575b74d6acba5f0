"""Image folders in the ImageNet layout, decoded with Pillow by DataLoader worker processes.

``root/train/<class>/*.jpg`` (any depth below the class directory; .jpeg, .png, .bmp, .ppm, .webp
and .tif too) and ``root/val/<class>/*``: the class directories' sorted names are the classes, and
``val/`` is the test set, as ImageNet's validation set is used in the literature. The layout is
checked before anything trains: missing ``train/`` or ``val/``, empty classes, class sets that
differ between the two, and unreadable images are errors naming the offending path. Unlike the
in-memory data sets, images are decoded per batch (an ImageNet does not fit in memory), each sample
with its own seed, so batches are identical whatever the number of workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dnas.data.errors import DatasetError, DatasetNotFoundError
from dnas.data.images import (
    IMAGE_EXTENSIONS,
    ImageTransform,
    check_image_header,
    is_image_file,
    open_image,
)
from dnas.data.loader import IGNORE_LABEL, Batch, BatchSchedule
from dnas.data.module import SPLITS, SplitDataModule, check_limits, split_indices
from dnas.errors import DnasError

TRAIN_DIR, TEST_DIR = "train", "val"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VERIFY = ("none", "header", "decode")
LAYOUT_HINT = (
    "An image folder has the ImageNet layout: ROOT/train/<class>/<image> and "
    "ROOT/val/<class>/<image>, the same class directories in both (images: "
    + " ".join(IMAGE_EXTENSIONS)
    + "); set data.root=ROOT."
)
_SHOW = 5  # how many offending names an error lists


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return shown + (f" (and {len(names) - _SHOW} more)" if len(names) > _SHOW else "")


@dataclass(frozen=True)
class FolderSplit:
    """The images of ``train/`` or ``val/``.

    Attributes:
        directory: the split's directory.
        files: paths relative to ``directory``, as a numpy bytes array (one object, not a list of
            millions, so forked workers do not copy it page by page as reference counts change).
        labels: class index of each file, int64 ``[N]``.
    """

    directory: Path
    files: np.ndarray
    labels: torch.Tensor

    def path(self, i: int) -> Path:
        """The absolute path of file ``i``."""
        return self.directory / os.fsdecode(self.files[i])


@dataclass(frozen=True)
class FolderIndex:
    """The classes (sorted directory names) and the files of both splits."""

    classes: tuple[str, ...]
    train: FolderSplit
    test: FolderSplit


def _class_files(split_dir: Path) -> dict[str, list[str]]:
    """Class name → its image files (relative to ``split_dir``, sorted)."""
    classes = sorted(
        e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith(".")
    )
    out: dict[str, list[str]] = {}
    for c in classes:
        files = []
        for dirpath, dirnames, filenames in os.walk(split_dir / c, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = Path(dirpath).relative_to(split_dir)
            files.extend(str(rel / f) for f in sorted(filenames) if is_image_file(f))
        out[c] = files
    return out


def scan_folder(root: str | os.PathLike) -> FolderIndex:
    """List and check the layout of an image folder (no image is opened).

    Raises:
        DatasetNotFoundError: ``root``, ``root/train`` or ``root/val`` does not exist.
        DatasetError: no classes or a single class, classes without images, or different class
            directories in ``train/`` and ``val/``; the message names them.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"image folder not found: directory {root} does not exist. " + LAYOUT_HINT
        )
    missing = [str(root / d) for d in (TRAIN_DIR, TEST_DIR) if not (root / d).is_dir()]
    if missing:
        raise DatasetNotFoundError(
            f"image folder {root}: missing directory {' and '.join(missing)}. " + LAYOUT_HINT
        )
    per_split = {d: _class_files(root / d) for d in (TRAIN_DIR, TEST_DIR)}
    train, test = per_split[TRAIN_DIR], per_split[TEST_DIR]
    if not train:
        raise DatasetError(f"{root / TRAIN_DIR}: no class directories. " + LAYOUT_HINT)
    if set(train) != set(test):
        only_train = sorted(set(train) - set(test))
        only_test = sorted(set(test) - set(train))
        parts = []
        if only_train:
            parts.append(f"only in {TRAIN_DIR}/: {_listing(only_train)}")
        if only_test:
            parts.append(f"only in {TEST_DIR}/: {_listing(only_test)}")
        raise DatasetError(
            f"image folder {root}: the class directories of {TRAIN_DIR}/ and {TEST_DIR}/ differ "
            f"({'; '.join(parts)})"
        )
    if len(train) < 2:
        raise DatasetError(f"{root / TRAIN_DIR}: one class ({next(iter(train))}); need at least 2")
    empty = [f"{d}/{c}" for d in (TRAIN_DIR, TEST_DIR) for c, f in per_split[d].items() if not f]
    if empty:
        raise DatasetError(
            f"image folder {root}: {len(empty)} class director{'y has' if len(empty) == 1 else 'ies have'} "
            f"no images ({_listing(empty)}); images end with " + " ".join(IMAGE_EXTENSIONS)
        )
    classes = tuple(train)

    def split(d: str) -> FolderSplit:
        files = [f for c in classes for f in per_split[d][c]]
        labels = [k for k, c in enumerate(classes) for _ in per_split[d][c]]
        return FolderSplit(
            root / d,
            np.array([os.fsencode(f) for f in files], dtype=np.bytes_),
            torch.tensor(labels, dtype=torch.int64),
        )

    return FolderIndex(classes, split(TRAIN_DIR), split(TEST_DIR))


class ImageFileDataset(Dataset):
    """Samples ``(x [C, H, W] float32, label)`` of some files of a split.

    Indexed by ``(position, seed)``: the seed drives the sample's random crop and flip, so a batch
    does not depend on which worker decodes it.

    Args:
        split: the split's files.
        indices: which of its files, int64 ``[N]``.
        transform: decodes and transforms one file.
    """

    def __init__(self, split: FolderSplit, indices: torch.Tensor, transform: ImageTransform):
        self.split = split
        self.indices = indices
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        position, seed = key
        if position < 0:  # a padding position (BatchSchedule): any image, a label nothing counts
            return self.transform(self.split.path(int(self.indices[0])), seed), IGNORE_LABEL
        i = int(self.indices[position])
        return self.transform(self.split.path(i), seed), int(self.split.labels[i])


class _SeededBatches(Sampler):
    """A ``BatchSchedule``'s batches as lists of ``(position, per-sample seed)``."""

    def __init__(self, schedule: BatchSchedule) -> None:
        self.schedule = schedule

    def __len__(self) -> int:
        return len(self.schedule)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator, batches = self.schedule.next_pass()
        for b in batches:
            positions = torch.arange(self.schedule.n)[b] if isinstance(b, slice) else b
            seeds = torch.randint(0, 2**62, (len(positions),), generator=generator)
            yield list(zip(positions.tolist(), seeds.tolist()))


def _collate(samples: list[tuple[torch.Tensor, int]]) -> Batch:
    xs, ys = zip(*samples)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)


class FileLoader:
    """Batches ``(x [B, C, H, W], y [B])`` decoded by a ``DataLoader``'s worker processes.

    The order is a :class:`BatchSchedule`'s, as for the in-memory loaders (seeded, a new
    permutation per pass, sharded by rank). It is not itself a ``DataLoader``, so Lightning does
    not swap in a sampler of its own.

    Args:
        dataset: the samples.
        schedule: which samples each batch holds.
        num_workers: decoding processes (0: decode in the calling process).
    """

    def __init__(self, dataset: ImageFileDataset, schedule: BatchSchedule, num_workers: int):
        if schedule.n != len(dataset):
            raise DnasError(f"schedule over {schedule.n} samples, dataset has {len(dataset)}")
        self.schedule = schedule
        self.loader = DataLoader(
            dataset,
            batch_sampler=_SeededBatches(schedule),
            num_workers=num_workers,
            collate_fn=_collate,
        )

    batch_sampler = None  # Lightning reads these two as it would a DataLoader's

    @property
    def sampler(self):
        """Lightning's ``set_epoch`` reaches the schedule: the pass follows the trainer's epoch."""
        return self.schedule.sampler

    def __len__(self) -> int:
        return len(self.schedule)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.loader)


class ImageFolderDataModule(SplitDataModule):
    """Classification from an image folder in the ImageNet layout (see the module docstring).

    ``train/`` is split (seeded) into weight, architecture and optional validation splits;
    ``val/`` is the test set, and the validation set unless ``val_fraction > 0``. The number of
    classes is the number of class directories; the search commands size the classifier from it.

    Args:
        root: the folder holding ``train/`` and ``val/``.
        image_size: side of the square network input (the space's resolution).
        channels: 3 (RGB) or 1 (grey); images are converted.
        batch_size: batch size of the weight and architecture loaders.
        eval_batch_size: batch size of the validation, test and recalibration loaders.
        arch_fraction: share of ``train/`` for architecture steps (0: weights only).
        val_fraction: share of ``train/`` held out for validation (0: validate on ``val/``).
        seed: seed of the split, the subsets, the batch order and the augmentation.
        augment: random-resized crop and horizontal flip on the weight split; otherwise (and for
            every other split) resize and centre crop.
        mean: per-channel mean of the pixels in [0, 1] (``channels`` values).
        std: per-channel standard deviation.
        crop_fraction: evaluation crop: the shorter side is resized to ``image_size /
            crop_fraction`` before the centre crop.
        crop_scale: range of the random crop's share of the image area.
        limit_train: keep only this many ``train/`` images (the first after a seeded shuffle).
        limit_test: keep only this many ``val/`` images (the first after a seeded shuffle).
        num_workers: decoding processes per loader (0: decode in the training process).
        drop_last: drop the last incomplete batch of the training loaders.
        verify: what ``check`` does with every image in use before training: ``"header"`` opens
            it and reads its header (catches missing, empty and non-image files), ``"decode"``
            decodes it fully (also catches truncated data; slow), ``"none"``. A file that fails
            to decode later is an error naming it all the same.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: int = 224,
        channels: int = 3,
        batch_size: int = 64,
        eval_batch_size: int = 128,
        arch_fraction: float = 0.5,
        val_fraction: float = 0.0,
        seed: int = 0,
        augment: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        crop_fraction: float = 0.875,
        crop_scale: Sequence[float] = (0.08, 1.0),
        limit_train: int | None = None,
        limit_test: int | None = None,
        num_workers: int = 4,
        drop_last: bool = True,
        verify: str = "header",
    ) -> None:
        check_limits(limit_train, limit_test)
        if num_workers < 0:
            raise DnasError(f"num_workers must be >= 0, got {num_workers}")
        if verify not in VERIFY:
            raise DnasError(f"verify must be one of {VERIFY}, got {verify!r}")
        super().__init__(
            input_shape=(channels, image_size, image_size),
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
        common = {"size": image_size, "channels": channels, "mean": mean, "std": std}
        self.train_transform = ImageTransform(
            **common, train=True, crop_fraction=crop_fraction, scale=tuple(crop_scale)
        )
        self.eval_transform = ImageTransform(**common, train=False, crop_fraction=crop_fraction)
        self.limit_train = limit_train
        self.limit_test = limit_test
        self.num_workers = int(num_workers)
        self.verify = verify
        self._index: FolderIndex | None = None
        self._verified = False

    # -- the folder ---------------------------------------------------------------------------

    @property
    def index(self) -> FolderIndex:
        """The classes and files (listed and checked on first use; no image is opened)."""
        if self._index is None:
            self._index = scan_folder(self.root)
        return self._index

    @property
    def num_classes(self) -> int:
        """Number of class directories."""
        return len(self.index.classes)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The class directories' names, in label order."""
        return self.index.classes

    def check(self) -> None:
        """Check the layout and (``verify``) every image the splits use, before any training.

        Raises:
            DatasetNotFoundError: ``root``, ``train/`` or ``val/`` is missing.
            DatasetError: the layout is wrong, or images are unreadable (the first few named).
        """
        self.setup()
        if self._verified or self.verify == "none":
            return
        assert self.split_indices is not None
        index = self.index
        used_train = torch.cat([self.split_indices[s] for s in ("weights", "arch", "val")])
        paths = [index.train.path(int(i)) for i in used_train.sort().values]
        paths += [index.test.path(int(i)) for i in self.split_indices["test"].sort().values]
        bad: list[str] = []
        for p in paths:
            try:
                if self.verify == "decode":
                    open_image(p, self.eval_transform.channels)
                else:
                    check_image_header(p)
            except DatasetError as e:
                bad.append(str(e))
        if bad:
            raise DatasetError(
                f"image folder {self.root}: {len(bad)} unreadable image(s) of {len(paths)}:\n  "
                + "\n  ".join(bad[:_SHOW])
                + (f"\n  … and {len(bad) - _SHOW} more" if len(bad) > _SHOW else "")
            )
        self._verified = True

    # -- splits -------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """List the folder and split it (once; no image is decoded)."""
        if self.split_indices is not None:
            return
        index = self.index
        splits = split_indices(
            len(index.train.labels),
            arch_fraction=self.arch_fraction,
            val_fraction=self.val_fraction,
            seed=self.seed,
            limit=self.limit_train,
        )
        n_test = len(index.test.labels)
        test_idx = torch.arange(n_test)
        if self.limit_test is not None:
            gen = torch.Generator().manual_seed(self.seed)
            test_idx = torch.randperm(n_test, generator=gen)[: self.limit_test]
        splits["test"] = test_idx
        self.split_indices = splits

    def _source(self, name: str) -> tuple[FolderSplit, torch.Tensor]:
        """The folder split and the indices into it of split ``name``."""
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; splits are {SPLITS}")
        self.setup()
        assert self.split_indices is not None
        if name == "test" or (name == "val" and self.val_fraction == 0):
            return self.index.test, self.split_indices["test"]
        return self.index.train, self.split_indices[name]

    @property
    def split_sizes(self) -> dict[str, int]:
        """Number of samples in each split."""
        return {name: len(self._source(name)[1]) for name in SPLITS}

    def _loaded_sizes(self) -> dict[str, int] | None:
        return None if self.split_indices is None else self.split_sizes

    # -- loaders ------------------------------------------------------------------------------

    def _loader(
        self, name: str, transform: ImageTransform, schedule_kw: dict, batch_size: int
    ) -> FileLoader:
        split, indices = self._source(name)
        dataset = ImageFileDataset(split, indices, transform)
        schedule = BatchSchedule(len(dataset), batch_size, **schedule_kw)
        return FileLoader(dataset, schedule, self.num_workers)

    def _train_loader(self, name: str, seed_offset: int, augment: bool) -> FileLoader:
        return self._loader(
            name,
            self.train_transform if augment else self.eval_transform,
            {"shuffle": True, "drop_last": self.drop_last, "seed": self.seed * 16 + seed_offset},
            self.batch_size,
        )

    def _eval_loader(self, name: str) -> FileLoader:
        return self._loader(
            name, self.eval_transform, {"shuffle": False, "pad": True}, self.eval_batch_size
        )

    def bn_recalibration_loader(self, num_batches: int) -> FileLoader:
        """A short, fixed-seed loader over the weight split, resized and centre-cropped.

        Args:
            num_batches: batches per pass (fewer if the split is smaller).

        Returns:
            Batches ``(x [B, C, H, W], y [B])`` with ``B = batch_size``.
        """
        return self._loader(
            "weights",
            self.eval_transform,
            {
                "shuffle": True,
                "seed": self.seed * 16 + 3,
                "max_batches": num_batches,
                "shard": False,  # every process re-estimates on the same batches
            },
            self.batch_size,
        )

    def sample(self, name: str, n: int, generator: torch.Generator) -> Batch:
        """``n`` images of split ``name``, drawn without replacement, resized and centre-cropped.

        Only those images are decoded.
        """
        split, indices = self._source(name)
        pick = indices[torch.randperm(len(indices), generator=generator)[:n]]
        if len(pick) == 0:
            raise DnasError(f"cannot sample {n} images from the {name} split of {len(indices)}")
        dataset = ImageFileDataset(split, pick, self.eval_transform)
        loader = FileLoader(
            dataset,
            BatchSchedule(len(pick), self.eval_batch_size, shuffle=False, shard=False),
            self.num_workers,
        )
        xs, ys = zip(*loader)
        return torch.cat(xs), torch.cat(ys)
