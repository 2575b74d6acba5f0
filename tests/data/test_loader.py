"""In-memory loaders, per-batch augmentation and seeded splits."""

from __future__ import annotations

import pytest
import torch

from dnas.data import TensorLoader, augment_batch, split_indices


def data(n: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return x, torch.arange(n)


def test_each_pass_serves_every_sample_once_in_a_new_order():
    x, y = data()
    loader = TensorLoader(x, y, 8, shuffle=True, seed=3)
    assert len(loader) == 7
    passes = [torch.cat([yb for _, yb in loader]) for _ in range(2)]
    for p in passes:
        assert sorted(p.tolist()) == list(range(50))
    assert not torch.equal(passes[0], passes[1])
    for xb, yb in loader:
        assert torch.equal(xb[:, 0, 0, 0], yb.float())  # inputs stay paired with labels


def test_order_is_reproducible_from_the_seed():
    x, y = data()
    first = [yb for _, yb in TensorLoader(x, y, 8, shuffle=True, seed=3)]
    again = [yb for _, yb in TensorLoader(x, y, 8, shuffle=True, seed=3)]
    other = [yb for _, yb in TensorLoader(x, y, 8, shuffle=True, seed=4)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("rank", [0, 1])
def test_shards_per_process_unless_told_not_to(monkeypatch, rank):
    """Under torch.distributed each rank serves its own half; an unsharded loader (batch-norm
    re-estimation) serves every rank the same batches."""
    monkeypatch.setattr("dnas.data.loader._world", lambda: (rank, 2))
    x, y = data()
    mine = torch.cat([yb for _, yb in TensorLoader(x, y, 8, shuffle=True, seed=3)])
    assert len(mine) == 25
    monkeypatch.setattr("dnas.data.loader._world", lambda: (1 - rank, 2))
    other = torch.cat([yb for _, yb in TensorLoader(x, y, 8, shuffle=True, seed=3)])
    assert set(mine.tolist()).isdisjoint(other.tolist())
    same = [TensorLoader(x, y, 8, shuffle=True, seed=3, shard=False) for _ in range(2)]
    assert torch.equal(*(torch.cat([yb for _, yb in loader]) for loader in same))
    assert len(same[0]) == 7


@pytest.mark.parametrize("shuffle", [False, True])
def test_padded_shares_serve_every_sample_once(monkeypatch, shuffle):
    """An evaluation loader (``pad``) on a split that two ranks cannot share evenly: both run
    the same number of batches, every sample is served once over the two, and the filler is
    labelled IGNORE_LABEL (its input any real image); unpadded, the last sample is dropped."""
    from dnas.data import IGNORE_LABEL

    x, y = data(49)
    served, batches = [], []
    for rank in (0, 1):
        monkeypatch.setattr("dnas.data.loader._world", lambda rank=rank: (rank, 2))
        loader = TensorLoader(x, y, 8, shuffle=shuffle, seed=3, pad=True)
        got = list(loader)
        batches.append((len(loader), len(got), [len(yb) for _, yb in got]))
        for xb, yb in got:
            real = yb != IGNORE_LABEL
            assert torch.equal(xb[real][:, 0, 0, 0], yb[real].float())  # still paired
        served.append(torch.cat([yb for _, yb in got]))
    assert batches[0] == batches[1] == (4, 4, [8, 8, 8, 1])
    assert served[0].tolist().count(IGNORE_LABEL) == 0
    assert served[1].tolist().count(IGNORE_LABEL) == 1
    real = torch.cat(served)
    assert sorted(real[real != IGNORE_LABEL].tolist()) == list(range(49))
    unpadded = torch.cat([yb for _, yb in TensorLoader(x, y, 8, shuffle=shuffle, seed=3)])
    assert len(unpadded) == 24 and IGNORE_LABEL not in unpadded.tolist()
    # in one process there is nothing to pad
    monkeypatch.setattr("dnas.data.loader._world", lambda: (0, 1))
    alone = torch.cat([yb for _, yb in TensorLoader(x, y, 8, shuffle=shuffle, pad=True)])
    assert sorted(alone.tolist()) == list(range(49))


def test_drop_last_and_max_batches():
    x, y = data()
    assert [len(yb) for _, yb in TensorLoader(x, y, 16, shuffle=True, drop_last=True)] == [16] * 3
    assert [len(yb) for _, yb in TensorLoader(x, y, 16, shuffle=False)] == [16, 16, 16, 2]
    # A split smaller than one batch still yields it.
    assert [len(yb) for _, yb in TensorLoader(x[:5], y[:5], 16, shuffle=True, drop_last=True)] == [
        5
    ]
    capped = TensorLoader(x, y, 16, shuffle=True, max_batches=2)
    assert len(capped) == 2 and len(list(capped)) == 2


def test_unshuffled_batches_do_not_alias_the_split():
    x, y = data()
    xb, _ = next(iter(TensorLoader(x, y, 4, shuffle=False)))
    xb.zero_()
    assert x[1, 0, 0, 0] == 1


def test_augment_crops_and_flips_per_sample():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, 6, 5)
    assert torch.equal(augment_batch(x, g, pad=0, flip=False), x)
    out = augment_batch(x, g, pad=2, flip=True, fill=-9.0)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-9.0)
    flips = 0
    for i in range(64):
        views = [padded[i, :, dy : dy + 6, dx : dx + 5] for dy in range(5) for dx in range(5)]
        plain = any(torch.equal(out[i], v) for v in views)
        flipped = any(torch.equal(out[i], v.flip(-1)) for v in views)
        assert plain or flipped, i
        flips += flipped and not plain
    assert 16 < flips < 48  # each image flipped with probability 1/2
    assert (out == -9.0).any()  # some crops reach into the padding


def test_augment_is_reproducible():
    x = torch.randn(8, 1, 5, 5)
    a = augment_batch(x, torch.Generator().manual_seed(1))
    b = augment_batch(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_split_indices_are_disjoint_seeded_and_sized():
    s = split_indices(1000, arch_fraction=0.3, val_fraction=0.1, seed=5)
    assert {k: len(v) for k, v in s.items()} == {"weights": 630, "arch": 270, "val": 100}
    assert sorted(torch.cat(list(s.values())).tolist()) == list(range(1000))
    again = split_indices(1000, arch_fraction=0.3, val_fraction=0.1, seed=5)
    assert all(torch.equal(s[k], again[k]) for k in s)
    other = split_indices(1000, arch_fraction=0.3, val_fraction=0.1, seed=6)
    assert not torch.equal(s["arch"], other["arch"])
    limited = split_indices(1000, arch_fraction=0.5, seed=5, limit=100)
    assert sum(len(v) for v in limited.values()) == 100


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"arch_fraction": 1.0}, "arch_fraction"),
        ({"arch_fraction": -0.1}, "arch_fraction"),
        ({"arch_fraction": 0.5, "val_fraction": 1.0}, "val_fraction"),
        ({"arch_fraction": 0.5, "limit": 0}, "limit_train"),
        ({"arch_fraction": 0.1, "limit": 3}, "arch split of 3 .* would be empty"),
    ],
)
def test_split_indices_refuses_bad_fractions(kw, match):
    with pytest.raises(ValueError, match=match):
        split_indices(1000, **kw)
