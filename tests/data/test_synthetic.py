"""The synthetic task: deterministic per seed, shaped as configured, learnable, usable by Lightning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import dnas
from dnas.data import SyntheticDataModule

CONF = Path(dnas.__file__).parent / "conf" / "data" / "synthetic.yaml"


def test_deterministic_per_seed():
    a, b, c = (SyntheticDataModule(num_train=256, num_test=64, seed=s) for s in (3, 3, 4))
    for name in ("weights", "arch", "test"):
        assert torch.equal(a.split(name)[0], b.split(name)[0])
        assert torch.equal(a.split(name)[1], b.split(name)[1])
        assert not torch.equal(a.split(name)[0], c.split(name)[0])
    batches_a = [y for _, y in a.weight_loader()]
    batches_b = [y for _, y in b.weight_loader()]
    assert all(torch.equal(p, q) for p, q in zip(batches_a, batches_b))


def test_shapes_sizes_and_balance():
    dm = SyntheticDataModule(
        num_train=400, num_test=80, num_classes=4, input_shape=(3, 8, 12), val_fraction=0.25
    )
    assert dm.num_classes == 4 and dm.input_shape == (3, 8, 12)
    assert dm.split_sizes == {"weights": 150, "arch": 150, "val": 100, "test": 80}
    x, y = dm.split("test")
    assert x.shape == (80, 3, 8, 12) and x.dtype == torch.float32
    assert torch.bincount(y).tolist() == [20] * 4
    train = torch.cat([dm.split(n)[0] for n in ("weights", "arch", "val")])
    assert abs(train.mean().item()) < 0.05 and abs(train.std().item() - 1) < 0.05


def test_combined_loader_and_recalibration_loader():
    dm = SyntheticDataModule(num_train=512, num_test=64, batch_size=32)
    loader = dm.train_dataloader()
    iter(loader)
    assert len(loader) == 8
    batches = [b for b, _, _ in loader]
    assert len(batches) == 8
    for b in batches:
        assert set(b) == {"weights", "arch"}
        assert b["weights"][0].shape == (32, 1, 28, 28) and b["arch"][1].shape == (32,)
    assert len(list(dm.bn_recalibration_loader(2))) == 2
    assert len(list(dm.bn_recalibration_loader(100))) == 8  # capped by the split


def test_learnable_by_logistic_regression():
    dm = SyntheticDataModule(num_train=1024, num_test=512, seed=0)
    torch.manual_seed(0)
    model = torch.nn.Linear(28 * 28, 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x_test, y_test = dm.split("test")

    def accuracy() -> float:
        with torch.no_grad():
            return (model(x_test.flatten(1)).argmax(1) == y_test).float().mean().item()

    before = accuracy()
    for x, y in dm.weight_loader():  # 8 steps
        loss = torch.nn.functional.cross_entropy(model(x.flatten(1)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = accuracy()
    assert before < 0.25 < 0.6 < after


def test_lightning_trainer_consumes_both_splits():
    import pytorch_lightning as pl

    class Probe(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(28 * 28, 10)
            self.keys: list[set[str]] = []

        def training_step(self, batch, batch_idx):
            self.keys.append(set(batch))
            x, y = batch["weights"]
            return torch.nn.functional.cross_entropy(self.linear(x.flatten(1)), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            acc = (self.linear(x.flatten(1)).argmax(1) == y).float().mean()
            self.log("val/acc", acc)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    dm = SyntheticDataModule(num_train=512, num_test=128)
    probe = Probe()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(probe, dm)
    assert len(probe.keys) == 2 * 4 and all(k == {"weights", "arch"} for k in probe.keys)
    assert trainer.callback_metrics["val/acc"] > 0.5


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match=r"arch split of 4 .* would be empty"):
        SyntheticDataModule(num_train=4, arch_fraction=0.01)
    with pytest.raises(ValueError, match="input_shape"):
        SyntheticDataModule(input_shape=(28, 28))
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticDataModule(num_classes=1)


def test_config_instantiates():
    from hydra.utils import instantiate

    dm = instantiate(OmegaConf.load(CONF))
    assert isinstance(dm, SyntheticDataModule)
    assert dm.input_shape == (1, 28, 28) and dm.num_classes == 10
    assert dm.split_sizes == {"weights": 1024, "arch": 1024, "val": 512, "test": 512}


def test_printing_does_not_load():
    dm = SyntheticDataModule(num_train=64, num_test=16, seed=2)
    assert str(dm).endswith("[not loaded]") and "seed=2" in str(dm)
    assert dm._splits is None
    dm.setup()
    assert "test=16" in str(dm)
