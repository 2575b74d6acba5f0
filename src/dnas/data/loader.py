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

from dnas.errors import DnasError

Batch = tuple[torch.Tensor, torch.Tensor]

#: The label of a padding sample (an evaluation loader's filler under ``torch.distributed``):
#: ``F.cross_entropy``'s default ``ignore_index``, and the metrics' ``ignore_index``.
IGNORE_LABEL = -100
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


class _Passes:
    """The ``sampler`` of a loader: only forwards ``set_epoch`` to its ``BatchSchedule``."""

    def __init__(self, schedule: BatchSchedule) -> None:
        self._schedule = schedule

    def set_epoch(self, epoch: int) -> None:
        self._schedule.set_epoch(epoch)


class BatchSchedule:
    """Which samples each batch of a pass holds: the order every loader of a split follows.

    Each pass draws a fresh permutation from ``(seed, pass number)``, so runs are reproducible and
    successive epochs differ. Under ``torch.distributed`` each rank takes a disjoint, equally long
    share of the permutation (the role a ``DistributedSampler`` plays for a ``DataLoader``). A
    split that does not divide evenly loses its last ``n mod world`` samples of the pass, or,
    with ``pad``, every sample is served once and the short shares are filled up with padding
    positions (index ``-1``; the loaders give them the label ``IGNORE_LABEL``), so every rank
    still runs the same number of batches and an evaluation covers the whole split.

    Args:
        n: number of samples in the split.
        batch_size: samples per batch.
        shuffle: draw a new permutation each pass; otherwise serve in order.
        drop_last: drop the last incomplete batch (kept anyway when ``n < batch_size``, so a tiny
            split still yields one batch).
        seed: seed of the permutations (and of the generator handed to each pass).
        max_batches: stop each pass after this many batches.
        shard: under ``torch.distributed``, serve each rank its own share; off, every rank gets
            the same batches (e.g. to re-estimate batch-norm statistics identically everywhere).
        pad: under ``torch.distributed``, serve every sample (see above) instead of dropping
            the remainder; for evaluation.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool = False,
        seed: int = 0,
        max_batches: int | None = None,
        shard: bool = True,
        pad: bool = False,
    ) -> None:
        if batch_size < 1:
            raise DnasError(f"batch_size must be >= 1, got {batch_size}")
        if max_batches is not None and max_batches < 1:
            raise DnasError(f"max_batches must be >= 1, got {max_batches}")
        self.n = int(n)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.max_batches = max_batches
        self.shard = shard
        self.pad = pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the pass number the next permutation is drawn from."""
        self.epoch = epoch

    batch_sampler = None  # read by Lightning beside ``sampler`` (a DataLoader has both)

    @property
    def sampler(self) -> _Passes:
        """What Lightning calls ``set_epoch`` on before each training epoch, as it does a
        ``DataLoader``'s sampler: the pass number then follows the trainer's epoch, so a run
        resumed from a checkpoint draws the same permutations as one that was never stopped."""
        return _Passes(self)

    @property
    def num_samples(self) -> int:
        """Samples this rank serves per pass, padding included (before ``drop_last`` and
        ``max_batches``)."""
        _, world = self._world()
        if world == 1:
            return self.n
        return -(-self.n // world) if self.pad else self.n // world

    def _world(self) -> tuple[int, int]:
        return _world() if self.shard else (0, 1)

    def __len__(self) -> int:
        n = self.num_samples
        if self.drop_last and n >= self.batch_size:
            batches = n // self.batch_size
        else:
            batches = -(-n // self.batch_size)
        return min(batches, self.max_batches) if self.max_batches is not None else batches

    def next_pass(self) -> tuple[torch.Generator, list[torch.Tensor | slice]]:
        """The generator of the next pass and its batches (then the pass number advances).

        Returns:
            ``(generator, batches)``: each batch is an int64 index tensor ``[B]`` when shuffling
            or sharding (``-1`` where it pads), else a ``slice`` of the split. The generator has
            drawn the permutation and is left for the pass's augmentation.
        """
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(self.n, generator=generator) if self.shuffle else None
        rank, world = self._world()
        if world > 1:
            idx = order if order is not None else torch.arange(self.n)
            share = self.num_samples
            if share * world > self.n:  # padded to equal shares
                idx = torch.cat([idx, idx.new_full((share * world - self.n,), -1)])
            order = idx[rank : rank + share * world : world]
        batches: list[torch.Tensor | slice] = []
        for i in range(len(self)):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            batches.append(sl if order is None else order[sl])
        return generator, batches


class TensorLoader(BatchSchedule):
    """Iterable of ``(x, y)`` batches taken from in-memory tensors, in a :class:`BatchSchedule`.

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
        shard, pad: see :class:`BatchSchedule`.
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
        pad: bool = False,
    ) -> None:
        if len(x) != len(y):
            raise DnasError(f"inputs and labels differ in length: {len(x)} vs {len(y)}")
        super().__init__(
            len(x),
            batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            seed=seed,
            max_batches=max_batches,
            shard=shard,
            pad=pad,
        )
        self.x, self.y = x, y
        self.transform = transform

    def __iter__(self) -> Iterator[Batch]:
        generator, batches = self.next_pass()
        for idx in batches:
            if isinstance(idx, slice):
                # Copies, so a model that edits its input in place cannot damage the split.
                xb, yb = self.x[idx].clone(), self.y[idx].clone()
            elif bool((idx < 0).any()):  # padding: any image, a label nothing counts
                xb, yb = self.x[idx.clamp_min(0)], self.y[idx.clamp_min(0)]
                yb = yb.masked_fill(idx < 0, IGNORE_LABEL)
            else:
                xb, yb = self.x[idx], self.y[idx]
            if self.transform is not None:
                xb = self.transform(xb, generator)
            yield xb, yb
