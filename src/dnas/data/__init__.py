"""Data modules: Fashion-MNIST (IDX files), CIFAR-10 (python batches), image folders in the
ImageNet layout, and a synthetic learnable task for tests.

All are Lightning data modules with the same splits and loaders; all but the image folder hold
every split in memory as a normalised float32 tensor (the image folder decodes per batch in worker
processes). ``train_dataloader()`` yields ``{"weights": (x, y), "arch": (x, y)}`` for the bi-level
search. This is the only ``dnas`` package that imports Lightning.
"""

from dnas.data.cifar10 import CIFAR10DataModule
from dnas.data.errors import DatasetError, DatasetNotFoundError
from dnas.data.fashion_mnist import FashionMNISTDataModule
from dnas.data.idx import IdxHeader, read_idx, read_idx_header, write_idx
from dnas.data.image_folder import ImageFolderDataModule
from dnas.data.images import ImageTransform
from dnas.data.loader import IGNORE_LABEL, BatchSchedule, TensorLoader, augment_batch
from dnas.data.module import (
    SPLITS,
    SplitDataModule,
    TensorDataModule,
    check_data_fits_space,
    split_indices,
)
from dnas.data.safe_pickle import UnsafePickleError, restricted_loads
from dnas.data.synthetic import SyntheticDataModule

__all__ = [
    "IGNORE_LABEL",
    "SPLITS",
    "BatchSchedule",
    "CIFAR10DataModule",
    "DatasetError",
    "DatasetNotFoundError",
    "FashionMNISTDataModule",
    "IdxHeader",
    "ImageFolderDataModule",
    "ImageTransform",
    "SplitDataModule",
    "SyntheticDataModule",
    "TensorDataModule",
    "TensorLoader",
    "UnsafePickleError",
    "augment_batch",
    "check_data_fits_space",
    "read_idx",
    "read_idx_header",
    "restricted_loads",
    "split_indices",
    "write_idx",
]
