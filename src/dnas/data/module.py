"""The Lightning data modules every data set shares: seeded splits and their loaders.

Training is bi-level (docs/DESIGN.md): a weight step on a batch of the *weight* split and an architecture
step on a batch of the held-out *arch* split, so ``train_dataloader()`` yields both at once.
``SplitDataModule`` fixes the splits and the loaders' roles; ``TensorDataModule`` holds the splits
in memory, so a subclass only has to load its tensors (``_load``). Data sets too large for memory
(image folders) implement the loaders of ``SplitDataModule`` themselves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import CombinedLoader

from dnas.data.loader import Batch, TensorLoader, augment_batch
from dnas.errors import DnasError

SPLITS = ("weights", "arch", "val", "test")


def check_limits(limit_train: int | None, limit_test: int | None) -> None:
    """``limit_train`` / ``limit_test`` are null or at least 1 (every data module's subsets)."""
    for name, limit in (("limit_test", limit_test), ("limit_train", limit_train)):
        if limit is None:
            continue
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise DnasError(f"{name} must be a whole number >= 1 or null, got {limit!r}")


def split_indices(
    n: int,
    *,
    arch_fraction: float,
    val_fraction: float = 0.0,
    seed: int = 0,
    limit: int | None = None,
) -> dict[str, torch.Tensor]:
    """Seeded, disjoint split of ``range(n)`` into weight, architecture and validation indices.

    ``range(n)`` is shuffled with ``seed``; the first ``limit`` indices (all if ``None``) form the
    pool; ``round(pool × val_fraction)`` of them are held out for validation, then
    ``round(rest × arch_fraction)`` go to the architecture split and the remainder to the weights.

    Args:
        n: number of training samples.
        arch_fraction: share (after the validation hold-out) for the architecture step, in [0, 1).
        val_fraction: share of the pool held out for validation, in [0, 1).
        seed: seed of the shuffle.
        limit: keep only this many samples (for fast tests and demos).

    Returns:
        ``{"weights": [Nw], "arch": [Na], "val": [Nv]}`` int64 index tensors; ``Na`` or ``Nv`` is 0
        when its fraction is 0; together they hold ``min(n, limit)`` distinct indices.

    Raises:
        ValueError: a fraction out of range, or a split that would be empty although requested.
    """
    if not 0.0 <= arch_fraction < 1.0:
        raise DnasError(f"arch_fraction must be in [0, 1), got {arch_fraction}")
    if not 0.0 <= val_fraction < 1.0:
        raise DnasError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if limit is not None and limit < 1:
        raise DnasError(f"limit_train must be >= 1 or null, got {limit}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if limit is not None:
        perm = perm[:limit]
    pool = len(perm)
    n_val = round(pool * val_fraction)
    n_arch = round((pool - n_val) * arch_fraction)
    n_weights = pool - n_val - n_arch
    for name, size, asked in (
        ("weight", n_weights, True),
        ("arch", n_arch, arch_fraction > 0),
        ("val", n_val, val_fraction > 0),
    ):
        if asked and size < 1:
            raise DnasError(
                f"the {name} split of {pool} training samples would be empty "
                f"(arch_fraction={arch_fraction}, val_fraction={val_fraction}): "
                "use more samples or other fractions"
            )
    return {
        "weights": perm[n_val + n_arch :],
        "arch": perm[n_val : n_val + n_arch],
        "val": perm[:n_val],
    }


def check_data_fits_space(space, data) -> None:
    """The data module gives the input shape of ``space`` (a ``SearchSpace``) and as many classes
    as it classifies (the commands first size the classifier to the data: ``fit_classes_to_data``).

    Raises:
        DnasError: naming both shapes (or class counts).
    """
    shape = tuple(getattr(data, "input_shape", ()))
    want = (space.in_channels, space.resolution, space.resolution)
    if shape not in ((), want):
        raise DnasError(
            f"data {type(data).__name__} gives inputs {shape}, space {space.name!r} expects {want}"
        )
    classes = getattr(data, "num_classes", None)
    if classes is not None and int(classes) != space.num_classes:
        raise DnasError(
            f"data {type(data).__name__} has {classes} classes, space {space.name!r} a "
            f"{space.num_classes}-way classifier (set space.num_classes={classes})"
        )


class SplitDataModule(pl.LightningDataModule, ABC):
    """The four splits and their loaders, whatever holds the data.

    Splits: ``weights`` (weight steps), ``arch`` (architecture steps), ``val`` (monitoring; the
    test set unless ``val_fraction > 0``) and ``test`` (final evaluation). Every loader method sets
    the module up on first use, so it also works outside a ``Trainer``.

    Args:
        input_shape: shape of one input ``(C, H, W)``.
        batch_size: batch size of the weight and architecture loaders.
        eval_batch_size: batch size of the validation, test and recalibration loaders.
        arch_fraction: share of the training set held out for architecture steps; 0 gives a
            plain (weights-only) training loader.
        val_fraction: share of the training set held out for validation; 0 validates on the test
            set (for monitoring only: nothing is selected on it).
        seed: seed of the split, the batch order and the augmentation.
        augment: augment weight-split batches (how is the subclass's choice).
        drop_last: drop the last incomplete batch of the training loaders.

    Attributes:
        split_indices: set by ``setup``: int64 indices of ``"weights"``, ``"arch"`` and ``"val"``
            into the training set (``"val"`` is empty when validating on the test set) and of
            ``"test"`` into the test set.
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, int, int],
        batch_size: int,
        eval_batch_size: int,
        arch_fraction: float,
        val_fraction: float,
        seed: int,
        augment: bool,
        drop_last: bool,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise DnasError(
                f"batch sizes must be >= 1, got batch_size={batch_size}, "
                f"eval_batch_size={eval_batch_size}"
            )
        if not 0.0 <= arch_fraction < 1.0:
            raise DnasError(f"arch_fraction must be in [0, 1), got {arch_fraction}")
        if not 0.0 <= val_fraction < 1.0:
            raise DnasError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self._input_shape = tuple(int(s) for s in input_shape)
        if len(self._input_shape) != 3:
            raise DnasError(f"input_shape must be (C, H, W), got {self._input_shape}")
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.arch_fraction = float(arch_fraction)
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)
        self.augment = bool(augment)
        self.drop_last = bool(drop_last)
        self.split_indices: dict[str, torch.Tensor] | None = None

    # -- to implement -------------------------------------------------------------------------

    @property
    @abstractmethod
    def num_classes(self) -> int:
        """Number of classes."""

    @property
    @abstractmethod
    def split_sizes(self) -> dict[str, int]:
        """Number of samples in each split (sets the module up)."""

    @abstractmethod
    def _train_loader(self, name: str, seed_offset: int, augment: bool) -> Iterable[Batch]:
        """Shuffled batches of split ``name``, seeded with ``seed * 16 + seed_offset``."""

    @abstractmethod
    def _eval_loader(self, name: str) -> Iterable[Batch]:
        """Batches of split ``name`` in order, without augmentation."""

    @abstractmethod
    def bn_recalibration_loader(self, num_batches: int) -> Iterable[Batch]:
        """A short, fixed-seed loader over the weight split without augmentation.

        Used to re-estimate batch-norm statistics of a derived network.

        Args:
            num_batches: batches per pass (fewer if the split is smaller).

        Returns:
            Batches ``(x [B, C, H, W], y [B])`` with ``B = batch_size``.
        """

    @abstractmethod
    def sample(self, name: str, n: int, generator: torch.Generator) -> Batch:
        """``n`` samples of split ``name`` drawn without replacement, without augmentation.

        Args:
            name: one of ``SPLITS``.
            n: how many (all of the split if it is smaller).
            generator: draws which samples (a ``randperm`` of the split, first ``n`` kept).

        Returns:
            ``(x [n, C, H, W] float32, y [n] int64)``.
        """

    def check(self) -> None:
        """Fail early, with a clear message, if the data cannot be loaded (cheap)."""

    def _loaded_sizes(self) -> dict[str, int] | None:
        """Split sizes if the data is already loaded, else ``None`` (never loads)."""
        return None

    # -- Lightning hooks ----------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Check the data is present (Lightning calls this on one process)."""
        self.check()

    # -- data ---------------------------------------------------------------------------------

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one input, ``(C, H, W)``."""
        return self._input_shape  # type: ignore[return-value]

    # -- loaders ------------------------------------------------------------------------------

    def weight_loader(self) -> Iterable[Batch]:
        """Shuffled batches ``(x [B, C, H, W], y [B])`` of the weight split (augmented if set)."""
        return self._train_loader("weights", 1, self.augment)

    def arch_loader(self) -> Iterable[Batch]:
        """Shuffled batches ``(x [B, C, H, W], y [B])`` of the architecture split (never augmented).

        Raises:
            ValueError: ``arch_fraction`` is 0, so there is no architecture split.
        """
        if self.arch_fraction == 0:
            raise DnasError("arch_fraction is 0: there is no architecture split")
        return self._train_loader("arch", 2, False)

    def train_dataloader(self) -> CombinedLoader | Iterable[Batch]:
        """Training batches: ``{"weights": (x, y), "arch": (x, y)}`` per step.

        A ``CombinedLoader`` in ``max_size_cycle`` mode (the shorter split is cycled), or the plain
        weight loader when ``arch_fraction`` is 0.
        """
        if self.arch_fraction == 0:
            return self.weight_loader()
        return CombinedLoader(
            {"weights": self.weight_loader(), "arch": self.arch_loader()}, mode="max_size_cycle"
        )

    def val_dataloader(self) -> Iterable[Batch]:
        """Validation batches ``(x [B, C, H, W], y [B])`` in order (the test set by default)."""
        return self._eval_loader("val")

    def test_dataloader(self) -> Iterable[Batch]:
        """Test batches ``(x [B, C, H, W], y [B])`` in order."""
        return self._eval_loader("test")

    def __repr__(self) -> str:
        args: dict[str, Any] = dict(self.hparams) if self.hparams else {}
        inner = ", ".join(f"{k}={v!r}" for k, v in args.items())
        return f"{type(self).__name__}({inner})"

    def __str__(self) -> str:
        # Lightning's own __str__ builds every loader (loading the data); this one never loads.
        sizes = self._loaded_sizes()
        if sizes is None:
            return f"{self!r} [not loaded]"
        return f"{self!r} [" + ", ".join(f"{k}={v}" for k, v in sizes.items()) + "]"


class TensorDataModule(SplitDataModule):
    """Splits held in memory as normalised tensors, served by :class:`TensorLoader`.

    Args:
        num_classes: number of classes.
        input_shape: shape of one input ``(C, H, W)``.
        batch_size: batch size of the weight and architecture loaders.
        eval_batch_size: batch size of the validation, test and recalibration loaders.
        arch_fraction: share of the training set held out for architecture steps; 0 gives a
            plain (weights-only) training loader.
        val_fraction: share of the training set held out for validation; 0 validates on the test
            set (for monitoring only: nothing is selected on it).
        seed: seed of the split, the batch order and the augmentation.
        augment: random crop (padding 2) and horizontal flip on weight-split batches.
        drop_last: drop the last incomplete batch of the training loaders.
        pad_value: padding value of the random crop (the normalised value of a black pixel).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        input_shape: tuple[int, int, int],
        batch_size: int,
        eval_batch_size: int,
        arch_fraction: float,
        val_fraction: float,
        seed: int,
        augment: bool,
        drop_last: bool,
        pad_value: float = 0.0,
    ) -> None:
        super().__init__(
            input_shape=input_shape,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            arch_fraction=arch_fraction,
            val_fraction=val_fraction,
            seed=seed,
            augment=augment,
            drop_last=drop_last,
        )
        self._num_classes = int(num_classes)
        self.pad_value = float(pad_value)
        self._splits: dict[str, Batch] | None = None

    # -- to implement -------------------------------------------------------------------------

    @abstractmethod
    def _load(self) -> dict[str, Batch]:
        """Load every split as ``(x [N, C, H, W] float32, y [N] int64)``, keyed by ``SPLITS``."""

    # -- Lightning hooks ----------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Load every split into memory (once; later calls do nothing)."""
        if self._splits is not None:
            return
        splits = self._load()
        for name in SPLITS:
            x, y = splits[name]
            if x.dtype != torch.float32 or tuple(x.shape[1:]) != self._input_shape:
                raise TypeError(
                    f"{type(self).__name__} split {name}: inputs {x.dtype} {tuple(x.shape)}"
                )
            if y.dtype != torch.int64 or y.shape != (len(x),):
                raise TypeError(
                    f"{type(self).__name__} split {name}: labels {y.dtype} {tuple(y.shape)}"
                )
        self._splits = splits

    # -- data ---------------------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return self._num_classes

    def split(self, name: str) -> Batch:
        """The tensors of one split: ``(x [N, C, H, W] float32, y [N] int64)``.

        Args:
            name: one of ``"weights"``, ``"arch"``, ``"val"``, ``"test"``.
        """
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; splits are {SPLITS}")
        self.setup()
        assert self._splits is not None
        return self._splits[name]

    @property
    def split_sizes(self) -> dict[str, int]:
        """Number of samples in each split."""
        return {name: len(self.split(name)[1]) for name in SPLITS}

    def _loaded_sizes(self) -> dict[str, int] | None:
        if self._splits is None:
            return None
        return {k: len(v[1]) for k, v in self._splits.items()}

    def sample(self, name: str, n: int, generator: torch.Generator) -> Batch:
        """``n`` samples of split ``name`` drawn without replacement (see the base class)."""
        x, y = self.split(name)
        pick = torch.randperm(len(y), generator=generator)[:n]
        return x[pick], y[pick]

    # -- loaders ------------------------------------------------------------------------------

    def _augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return augment_batch(x, generator, pad=2, flip=True, fill=self.pad_value)

    def _train_loader(self, name: str, seed_offset: int, augment: bool) -> TensorLoader:
        x, y = self.split(name)
        return TensorLoader(
            x,
            y,
            self.batch_size,
            shuffle=True,
            drop_last=self.drop_last,
            seed=self.seed * 16 + seed_offset,
            transform=self._augment if augment else None,
        )

    def _eval_loader(self, name: str) -> TensorLoader:
        x, y = self.split(name)
        return TensorLoader(x, y, self.eval_batch_size, shuffle=False, pad=True)

    def bn_recalibration_loader(self, num_batches: int) -> TensorLoader:
        """A short, fixed-seed loader over the weight split without augmentation.

        Used to re-estimate batch-norm statistics of a derived network. Not sharded under
        ``torch.distributed``: every process re-estimates on the same batches, so all of them
        evaluate the same network.

        Args:
            num_batches: batches per pass (fewer if the split is smaller).

        Returns:
            Batches ``(x [B, C, H, W], y [B])`` with ``B = batch_size``.
        """
        x, y = self.split("weights")
        return TensorLoader(
            x,
            y,
            self.batch_size,
            shuffle=True,
            seed=self.seed * 16 + 3,
            max_batches=num_batches,
            shard=False,
        )
