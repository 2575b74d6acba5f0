"""The run history is taken from what a module logs, one row per epoch, and travels in checkpoints."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from dnas.checkpoint import atomic_checkpoint_io, checkpoint_callback, read_checkpoint
from dnas.history import History, history_of


class _Logs(pl.LightningModule):
    """Logs known values: ``train/x`` = 10 * epoch (in its own epoch end), ``val/acc`` = epoch
    + 0.5 and a front's per-target ``val/acc_t<k>`` = epoch + k."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w * batch[0]).sum()

    def on_train_epoch_end(self) -> None:
        self.log("train/x", 10.0 * self.current_epoch)  # after the callbacks' own hook

    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self) -> None:
        self.log("val/acc", self.current_epoch + 0.5)
        for k in range(2):
            self.log(f"val/acc_t{k}", float(self.current_epoch + k))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def test_step(self, batch, batch_idx):
        pass

    def configure_callbacks(self):
        if getattr(self, "_history", None) is None:
            self._history = History(train={"train/x": "x"}, val={"val/acc": "val_acc"})
        return [self._history]


def _loader():
    return DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=2)


def _fit(tmp_path, epochs: int, every: int = 1, **kw) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=epochs,
        check_val_every_n_epoch=every,
        num_sanity_val_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        **kw,
    )
    trainer.fit(_Logs(), train_dataloaders=_loader(), val_dataloaders=_loader())
    return trainer


def test_one_row_per_epoch_of_the_logged_values(tmp_path):
    rows = history_of(_fit(tmp_path, 3)).rows
    # what the module logs in its own epoch end is in the row (the history runs after it), and
    # the sanity check left nothing
    assert rows == [
        {"epoch": e, "x": 10.0 * e, "val_acc": e + 0.5, "val_acc_t0": e, "val_acc_t1": e + 1.0}
        for e in range(3)
    ]


def test_testing_after_fit_keeps_the_fit_history(tmp_path):
    trainer = _fit(tmp_path, 2)
    trainer.test(trainer.lightning_module, dataloaders=_loader(), verbose=False)
    assert [r["epoch"] for r in history_of(trainer).rows] == [0, 1]


def test_an_epoch_without_validation_has_no_stale_validation_values(tmp_path):
    rows = history_of(_fit(tmp_path, 4, every=2)).rows
    assert [sorted(r) for r in rows[::2]] == [["epoch", "x"]] * 2  # epochs 0 and 2
    assert rows[1]["val_acc"] == rows[1]["epoch"] + 0.5 and rows[3]["val_acc"] == 3.5


def test_a_front_member_reads_its_own_values_under_one_target_names():
    h = History(train={}, val={})
    h.rows = [{"epoch": 0, "tau": 1.0, "val_acc": 0.5, "val_acc_t0": 0.2, "val_acc_t1": 0.8}]
    assert h.for_target(1, 2) == [{"epoch": 0, "tau": 1.0, "val_acc": 0.8}]
    assert h.for_target(0, 2) == [{"epoch": 0, "tau": 1.0, "val_acc": 0.2}]
    assert h.for_target(0, 1) == h.rows and h.for_target(0, 1) is not h.rows


def test_the_last_checkpoint_holds_the_epoch_it_ends_and_resume_continues(tmp_path):
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    kw = {"callbacks": [checkpoint_callback(tmp_path)], "plugins": [atomic_checkpoint_io()]}
    full = history_of(_fit(tmp_path / "full", 3)).rows
    _fit(tmp_path, 2, **kw)
    saved = read_checkpoint(ckpt)["callbacks"]["History"]["rows"]
    assert saved == full[:2]  # epoch 1's row was taken before the checkpoint was written

    trainer = pl.Trainer(
        max_epochs=3,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        **kw,
    )
    trainer.fit(
        _Logs(), train_dataloaders=_loader(), val_dataloaders=_loader(), ckpt_path=str(ckpt)
    )
    assert history_of(trainer).rows == full


def test_a_trainer_without_a_history_says_how_to_get_one():
    with pytest.raises(LookupError, match="configure_callbacks"):
        history_of(pl.Trainer(logger=False, enable_progress_bar=False))
