"""In-memory batch loaders: shuffled batches sliced from tensors, with per-batch augmentation.

On a small CPU the per-sample ``Dataset``/``collate`` pipeline costs more than a small network's
step, so each split lives in memory as one normalised float32 tensor and a batch is one
fancy-indexing operation. Augmentation (random crop with padding, horizontal flip) acts on the whole
batch at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

Batch = tuple[torch.Tensor, torch.Tensor]
Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    pad: int = 2,
    flip: bool = True,
    fill: float = 0.0,
) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, drawn per sample.

    Args:
        x: images ``[B, C, H, W]``.
        generator: source of randomness (so augmentation is reproducible).
        pad: padding on each side before cropping back to ``H × W``; 0 disables the crop.
        flip: flip each image left-right with probability 1/2.
        fill: value of the padding (for normalised images, the normalised value of black).

    Returns:
        Augmented images ``[B, C, H, W]``, a new tensor.
    """
    b, _, h, w = x.shape
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad), value=fill)
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        rows = dy[:, None] + torch.arange(h)  # [B, H]
        cols = dx[:, None] + torch.arange(w)  # [B, W]
        # Advanced indices on dims 0, 2, 3 of [B, H+2p, W+2p, C] give [B, H, W, C].
        crop = padded.permute(0, 2, 3, 1)[
            torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]
        ]
        x = crop.permute(0, 3, 1, 2).contiguous()
    if flip:
        mask = torch.rand(b, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


def _world() -> tuple[int, int]:
    """(rank, world size) of the default process group, or (0, 1) when not distributed."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class TensorLoader:
    """Iterable of ``(x, y)`` batches taken from in-memory tensors.

    Each pass draws a fresh permutation from ``(seed, pass number)``, so runs are reproducible and
    successive epochs differ. Under ``torch.distributed`` each rank takes a disjoint, equally long
    share of the permutation (the role a ``DistributedSampler`` plays for a ``DataLoader``), unless
    ``shard`` is off.

    Args:
        x: inputs ``[N, C, H, W]`` (float32, already normalised).
        y: labels ``[N]`` (int64).
        batch_size: samples per batch.
        shuffle: draw a new permutation each pass; otherwise serve in order.
        drop_last: drop the last incomplete batch (kept anyway when ``N < batch_size``, so a tiny
            split still yields one batch).
        seed: seed of the permutations and of ``transform``.
        transform: per-batch augmentation ``(x [B, C, H, W], generator) -> x``.
        max_batches: stop each pass after this many batches.
        shard: under ``torch.distributed``, serve each rank its own share; off, every rank gets
            the same batches (e.g. to re-estimate batch-norm statistics identically everywhere).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool = False,
        seed: int = 0,
        transform: Transform | None = None,
        max_batches: int | None = None,
        shard: bool = True,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"inputs and labels differ in length: {len(x)} vs {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_batches is not None and max_batches < 1:
            raise ValueError(f"max_batches must be >= 1, got {max_batches}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.transform = transform
        self.max_batches = max_batches
        self.shard = shard
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the pass number the next permutation is drawn from."""
        self.epoch = epoch

    @property
    def num_samples(self) -> int:
        """Samples this rank serves per pass (before ``drop_last`` and ``max_batches``)."""
        _, world = self._world()
        return len(self.x) // world if world > 1 else len(self.x)

    def _world(self) -> tuple[int, int]:
        return _world() if self.shard else (0, 1)

    def __len__(self) -> int:
        n = self.num_samples
        if self.drop_last and n >= self.batch_size:
            batches = n // self.batch_size
        else:
            batches = -(-n // self.batch_size)
        return min(batches, self.max_batches) if self.max_batches is not None else batches

    def __iter__(self) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        n_all = len(self.x)
        order = torch.randperm(n_all, generator=generator) if self.shuffle else None
        rank, world = self._world()
        if world > 1:
            share = n_all // world
            idx = order if order is not None else torch.arange(n_all)
            order = idx[rank : rank + share * world : world]
        for i in range(len(self)):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            if order is None:
                # Copies, so a model that edits its input in place cannot damage the split.
                xb, yb = self.x[sl].clone(), self.y[sl].clone()
            else:
                idx = order[sl]
                xb, yb = self.x[idx], self.y[idx]
            if self.transform is not None:
                xb = self.transform(xb, generator)
            yield xb, yb
