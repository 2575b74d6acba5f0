"""Data modules: Fashion-MNIST from its IDX files, and a synthetic learnable task for tests.

Both are Lightning data modules holding every split in memory as a normalised float32 tensor.
``train_dataloader()`` yields ``{"weights": (x, y), "arch": (x, y)}`` for the bi-level search.
This is the only ``dnas`` package that imports Lightning.
"""

from dnas.data.errors import DatasetError, DatasetNotFoundError
from dnas.data.fashion_mnist import FashionMNISTDataModule
from dnas.data.idx import IdxHeader, read_idx, read_idx_header, write_idx
from dnas.data.loader import TensorLoader, augment_batch
from dnas.data.module import SPLITS, TensorDataModule, check_data_fits_space, split_indices
from dnas.data.synthetic import SyntheticDataModule

__all__ = [
    "SPLITS",
    "DatasetError",
    "DatasetNotFoundError",
    "FashionMNISTDataModule",
    "IdxHeader",
    "SyntheticDataModule",
    "TensorDataModule",
    "TensorLoader",
    "augment_batch",
    "check_data_fits_space",
    "read_idx",
    "read_idx_header",
    "split_indices",
    "write_idx",
]
