"""A small, seeded, learnable classification task for tests and demos: class prototypes plus noise.

Each class has a smooth random prototype image (a coarse Gaussian grid upsampled bilinearly); a
sample is its class's prototype plus white noise. A linear model or a small conv net learns it in a
few steps, so tests can check that training improves accuracy, and no files are needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from dnas.data.loader import Batch
from dnas.data.module import TensorDataModule, split_indices
from dnas.errors import DnasError


def make_prototypes(
    num_classes: int, input_shape: Sequence[int], generator: torch.Generator, coarse: int = 4
) -> torch.Tensor:
    """Smooth random images, one per class, each with zero mean and unit standard deviation.

    Args:
        num_classes: number of prototypes.
        input_shape: ``(C, H, W)``.
        generator: source of randomness.
        coarse: the noise grid is ``coarse`` times smaller than the image before upsampling.

    Returns:
        Prototypes ``[num_classes, C, H, W]``.
    """
    c, h, w = input_shape
    grid = torch.randn(
        num_classes, c, math.ceil(h / coarse) + 1, math.ceil(w / coarse) + 1, generator=generator
    )
    protos = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=True)
    flat = protos.flatten(1)
    flat = (flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True).clamp_min(1e-6)
    return flat.view(num_classes, c, h, w)


def make_samples(
    prototypes: torch.Tensor, n: int, noise: float, generator: torch.Generator
) -> Batch:
    """Class-balanced samples ``prototype[y] + noise·ε``, scaled to unit variance.

    Args:
        prototypes: ``[K, C, H, W]``.
        n: number of samples.
        noise: standard deviation of the noise relative to the prototypes' (which is 1).
        generator: source of randomness.

    Returns:
        ``(x [n, C, H, W] float32, y [n] int64)``; labels cycle through the classes, shuffled.
    """
    k = len(prototypes)
    y = (torch.arange(n) % k)[torch.randperm(n, generator=generator)]
    eps = torch.randn(n, *prototypes.shape[1:], generator=generator)
    x = (prototypes[y] + noise * eps) / math.sqrt(1.0 + noise**2)
    return x.float(), y.long()


class SyntheticDataModule(TensorDataModule):
    """Seeded prototype-plus-noise classification with the interface of the real data modules.

    The same seed gives the same data, splits and batch order. ``num_train`` samples are split like
    a real training set (weight / architecture / optional validation hold-out); ``num_test``
    further samples form the test set, which is also the validation set unless
    ``val_fraction > 0``.

    Args:
        num_train: training samples (before splitting).
        num_test: test samples.
        num_classes: number of classes.
        input_shape: shape of one input ``(C, H, W)``.
        noise: noise standard deviation relative to the prototypes'; higher is harder.
        seed: seed of the data, the split, batch order and augmentation.
        batch_size: batch size of the weight and architecture loaders.
        eval_batch_size: batch size of the validation, test and recalibration loaders.
        arch_fraction: share of the training set for architecture steps (0: weights only).
        val_fraction: share of the training set held out for validation (0: validate on test).
        augment: random crop (padding 2) and horizontal flip of weight-split batches.
        drop_last: drop the last incomplete batch of the training loaders.
    """

    def __init__(
        self,
        num_train: int = 2048,
        num_test: int = 512,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        noise: float = 6.0,
        seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        arch_fraction: float = 0.5,
        val_fraction: float = 0.0,
        augment: bool = False,
        drop_last: bool = True,
    ) -> None:
        if num_train < 1 or num_test < 1:
            raise DnasError(f"num_train and num_test must be >= 1, got {num_train}, {num_test}")
        if num_classes < 2:
            raise DnasError(f"num_classes must be >= 2, got {num_classes}")
        if noise < 0:
            raise DnasError(f"noise must be >= 0, got {noise}")
        input_shape = tuple(int(s) for s in input_shape)
        super().__init__(
            num_classes=num_classes,
            input_shape=input_shape,  # type: ignore[arg-type]
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            arch_fraction=arch_fraction,
            val_fraction=val_fraction,
            seed=seed,
            augment=augment,
            drop_last=drop_last,
        )
        self.save_hyperparameters()
        self.num_train = int(num_train)
        self.num_test = int(num_test)
        self.noise = float(noise)
        # Fail now, not at setup, if the fractions leave a split empty.
        split_indices(num_train, arch_fraction=arch_fraction, val_fraction=val_fraction, seed=seed)

    def _load(self) -> dict[str, Batch]:
        gen = torch.Generator().manual_seed(self.seed)
        protos = make_prototypes(self.num_classes, self.input_shape, gen)
        x_train, y_train = make_samples(protos, self.num_train, self.noise, gen)
        x_test, y_test = make_samples(protos, self.num_test, self.noise, gen)
        self.split_indices = split_indices(
            self.num_train,
            arch_fraction=self.arch_fraction,
            val_fraction=self.val_fraction,
            seed=self.seed,
        )
        splits: dict[str, Batch] = {
            name: (x_train[idx], y_train[idx]) for name, idx in self.split_indices.items()
        }
        self.split_indices["test"] = torch.arange(self.num_test)
        splits["test"] = (x_test, y_test)
        if self.val_fraction == 0:
            splits["val"] = splits["test"]
        return splits
