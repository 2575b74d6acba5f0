"""Fashion-MNIST: clear errors for missing or damaged files, and the real data set's splits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from pytorch_lightning.utilities import CombinedLoader

import dnas
from dnas.data import DatasetError, DatasetNotFoundError, FashionMNISTDataModule, write_idx
from dnas.data.fashion_mnist import DEFAULT_ROOT, FILES

CONF = Path(dnas.__file__).parent / "conf" / "data" / "fashion_mnist.yaml"
INSTALL = "apt-get install -y dataset-fashion-mnist"


def fake_root(root: Path, n_train: int = 40, n_test: int = 20, gz: bool = True) -> Path:
    """A miniature Fashion-MNIST: the four files with random images and labels 0..9."""
    g = torch.Generator().manual_seed(0)
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("test", n_test)):
        images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        labels = (torch.arange(n) % 10).to(torch.uint8)
        write_idx(root / (FILES[f"{split}_images"] + suffix), images)
        write_idx(root / (FILES[f"{split}_labels"] + suffix), labels)
    return root


# -- errors ---------------------------------------------------------------------------------------


def test_missing_root_says_where_it_looked_and_how_to_install(tmp_path):
    root = tmp_path / "no-such-dir"
    dm = FashionMNISTDataModule(root=root)
    for call in (dm.check, dm.prepare_data, dm.setup, dm.train_dataloader):
        with pytest.raises(DatasetNotFoundError) as e:
            call()
        msg = str(e.value)
        assert str(root) in msg and "does not exist" in msg
        assert INSTALL in msg and "data.root=" in msg
        for name in FILES.values():
            assert str(root / name) in msg and str(root / f"{name}.gz") in msg
    assert isinstance(e.value, ValueError)


def test_one_missing_file_is_named(tmp_path):
    root = fake_root(tmp_path / "fm")
    (root / (FILES["test_labels"] + ".gz")).unlink()
    with pytest.raises(DatasetNotFoundError) as e:
        FashionMNISTDataModule(root=root).check()
    msg = str(e.value)
    assert FILES["test_labels"] in msg and FILES["train_images"] not in msg
    assert INSTALL in msg


@pytest.mark.parametrize("gz", [True, False])
def test_miniature_data_set_loads(tmp_path, gz):
    root = fake_root(tmp_path / "fm", gz=gz)
    dm = FashionMNISTDataModule(root=root, batch_size=8, eval_batch_size=16)
    dm.check()
    assert dm.split_sizes == {"weights": 20, "arch": 20, "val": 20, "test": 20}
    x, y = dm.split("weights")
    assert x.shape == (20, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_image_and_label_counts_must_agree(tmp_path):
    root = fake_root(tmp_path / "fm")
    write_idx(root / (FILES["train_labels"] + ".gz"), torch.zeros(39, dtype=torch.uint8))
    with pytest.raises(DatasetError, match=r"40 images but .* 39 labels"):
        FashionMNISTDataModule(root=root).check()


def test_images_must_be_28_by_28(tmp_path):
    root = fake_root(tmp_path / "fm")
    path = root / (FILES["test_images"] + ".gz")
    write_idx(path, torch.zeros(20, 32, 32, dtype=torch.uint8))
    with pytest.raises(DatasetError, match=r"\[N, 28, 28\]") as e:
        FashionMNISTDataModule(root=root).check()
    assert str(path) in str(e.value)


def test_labels_out_of_range_are_refused(tmp_path):
    root = fake_root(tmp_path / "fm")
    write_idx(root / (FILES["train_labels"] + ".gz"), torch.full((40,), 10, dtype=torch.uint8))
    with pytest.raises(DatasetError, match=r"label 10 out of range 0\.\.9"):
        FashionMNISTDataModule(root=root).setup()


def test_damaged_file_is_named_at_setup(tmp_path):
    root = fake_root(tmp_path / "fm")
    path = root / (FILES["train_images"] + ".gz")
    path.write_bytes(path.read_bytes()[:-100])
    dm = FashionMNISTDataModule(root=root)
    dm.check()  # headers are intact: only the full read finds the damage
    with pytest.raises(DatasetError) as e:
        dm.setup()
    assert str(e.value).startswith(str(path))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"arch_fraction": 1.0}, "arch_fraction"),
        ({"val_fraction": -0.5}, "val_fraction"),
        ({"batch_size": 0}, "batch sizes"),
        ({"std": 0.0}, "std"),
        ({"limit_test": 0}, "limit_test"),
    ],
)
def test_bad_arguments_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        FashionMNISTDataModule(**kw)


def test_config_instantiates(tmp_path):
    from hydra.utils import instantiate

    cfg = OmegaConf.load(CONF)
    assert cfg.root == DEFAULT_ROOT
    cfg.root = str(fake_root(tmp_path / "fm"))
    dm = instantiate(cfg)
    assert isinstance(dm, FashionMNISTDataModule)
    assert (dm.batch_size, dm.eval_batch_size, dm.arch_fraction, dm.augment) == (
        128,
        512,
        0.5,
        False,
    )
    assert dm.split_sizes["test"] == 20


# -- the real data set ----------------------------------------------------------------------------

real = pytest.mark.skipif(
    not Path(DEFAULT_ROOT).is_dir(),
    reason=f"Fashion-MNIST is not installed at {DEFAULT_ROOT} ({INSTALL})",
)


@pytest.fixture(scope="module")
def fmnist() -> FashionMNISTDataModule:
    if not Path(DEFAULT_ROOT).is_dir():
        pytest.skip(f"Fashion-MNIST is not installed at {DEFAULT_ROOT} ({INSTALL})")
    dm = FashionMNISTDataModule(seed=0)
    dm.prepare_data()
    dm.setup("fit")
    return dm


@real
def test_real_sizes_and_labels(fmnist):
    sizes = fmnist.split_sizes
    assert sizes == {"weights": 30000, "arch": 30000, "val": 10000, "test": 10000}
    for name in ("weights", "arch", "test"):
        _, y = fmnist.split(name)
        assert int(y.min()) == 0 and int(y.max()) == 9
        assert torch.bincount(y, minlength=10).min() > 0.08 * len(y)  # roughly balanced
    assert fmnist.split("val") is fmnist.split("test")  # validation = test by default


@real
def test_real_splits_are_disjoint_and_cover_the_training_set(fmnist):
    idx = fmnist.split_indices
    train = torch.cat([idx["weights"], idx["arch"], idx["val"]])
    assert len(train) == 60000 and len(torch.unique(train)) == 60000
    assert torch.equal(torch.sort(idx["test"]).values, torch.arange(10000))


@real
def test_real_split_is_reproducible_per_seed():
    def arch_split(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        dm = FashionMNISTDataModule(seed=seed, limit_train=2000, limit_test=100)
        x, _ = dm.split("arch")
        assert dm.split_sizes == {"weights": 1000, "arch": 1000, "val": 100, "test": 100}
        return dm.split_indices["arch"], x

    idx0, x0 = arch_split(0)
    idx0b, x0b = arch_split(0)
    idx1, _ = arch_split(1)
    assert torch.equal(idx0, idx0b) and torch.equal(x0, x0b)
    assert not torch.equal(idx0, idx1)


@real
def test_real_normalisation(fmnist):
    x = torch.cat([fmnist.split("weights")[0], fmnist.split("arch")[0]])
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 0.01
    assert abs(x.std().item() - 1.0) < 0.01
    assert x.min().item() == pytest.approx(-0.2860 / 0.3530, abs=1e-5)  # black pixels


@real
def test_real_combined_loader(fmnist):
    loader = fmnist.train_dataloader()
    assert isinstance(loader, CombinedLoader)
    iter(loader)
    assert len(loader) == 30000 // 128
    batch, _, _ = next(iter(loader))
    assert set(batch) == {"weights", "arch"}
    for x, y in batch.values():
        assert x.shape == (128, 1, 28, 28) and x.dtype == torch.float32
        assert y.shape == (128,) and y.dtype == torch.int64
    x, y = next(iter(fmnist.val_dataloader()))
    assert x.shape == (512, 1, 28, 28)
    assert len(fmnist.test_dataloader()) == -(-10000 // 512)


@real
def test_real_held_out_validation_and_weights_only():
    dm = FashionMNISTDataModule(val_fraction=0.1, arch_fraction=0.0, limit_test=10)
    sizes = dm.split_sizes
    assert sizes == {"weights": 54000, "arch": 0, "val": 6000, "test": 10}
    assert (
        len(torch.unique(torch.cat([dm.split_indices["weights"], dm.split_indices["val"]])))
        == 60000
    )
    loader = dm.train_dataloader()
    assert not isinstance(loader, CombinedLoader)
    x, _ = next(iter(loader))
    assert x.shape == (128, 1, 28, 28)
    with pytest.raises(ValueError, match="no architecture split"):
        dm.arch_loader()


@real
def test_real_augmentation_only_on_the_weight_split():
    dm = FashionMNISTDataModule(augment=True, limit_train=512, limit_test=64, batch_size=64)
    xw, _ = dm.split("weights")
    xa, _ = dm.split("arch")

    def rows_of(batch: torch.Tensor, split: torch.Tensor) -> bool:
        flat = split.flatten(1)
        return all((flat == b.flatten()).all(1).any() for b in batch)

    weights = next(iter(dm.weight_loader()))[0]
    assert not rows_of(weights, xw)  # augmented: not verbatim training images
    assert rows_of(next(iter(dm.arch_loader()))[0], xa)
    recal = list(dm.bn_recalibration_loader(3))
    assert len(recal) == 3 and all(rows_of(x, xw) for x, _ in recal)
