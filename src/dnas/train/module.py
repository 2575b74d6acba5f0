"""The Lightning module that finetunes a child network (quantization-aware, at its fixed bits)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from dnas.checkpoint import CheckpointError, ResumableModule
from dnas.data.loader import IGNORE_LABEL
from dnas.errors import DnasError, NonFiniteLossError
from dnas.history import History
from dnas.supernet import ChildNet


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR factor per step: linear warm-up from ~0 to 1, then cosine decay to 0 at ``total_steps``."""
    total_steps, warmup_steps = max(1, total_steps), max(0, min(warmup_steps, total_steps - 1))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))

    return factor


def check_train_settings(
    warmup_epochs: float, label_smoothing: float, bn_batches: int | None = None
) -> None:
    """The finetuning settings (``train.*``) a user can get wrong, checked before any work."""
    if warmup_epochs < 0:
        raise DnasError(f"train.warmup_epochs must be >= 0, got {warmup_epochs}")
    if not 0 <= label_smoothing < 1:
        raise DnasError(f"train.label_smoothing must be in [0, 1), got {label_smoothing}")
    if bn_batches is not None and bn_batches < 0:
        raise DnasError(f"train.bn_batches must be >= 0, got {bn_batches}")


class ChildModule(ResumableModule, pl.LightningModule):
    """Quantization-aware training of a ``ChildNet``: cross-entropy, cosine LR per step.

    Args:
        child: the network (random or inherited weights).
        optimizer: ``params -> Optimizer`` (e.g. a partial SGD).
        warmup_epochs: linear LR warm-up (fraction of an epoch allowed); then cosine to 0.
        label_smoothing: cross-entropy label smoothing.
        num_classes: the network's outputs, for a child that is not a ``ChildNet`` (the derived
            network of a converted one); None: ``child.space.num_classes``.
        identity: what a checkpoint of this training must match, for such a child (e.g. its
            graph fingerprint and choice); None: the ``ChildNet``'s space and architecture.
    """

    def __init__(
        self,
        child: ChildNet,
        optimizer: Callable[..., torch.optim.Optimizer],
        warmup_epochs: float = 0.0,
        label_smoothing: float = 0.0,
        *,
        num_classes: int | None = None,
        identity: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_train_settings(warmup_epochs, label_smoothing)
        self.child = child
        self._optimizer = optimizer
        self.warmup_epochs, self.label_smoothing = float(warmup_epochs), float(label_smoothing)
        self._identity = None if identity is None else dict(identity)
        n = child.space.num_classes if num_classes is None else int(num_classes)
        self.val_acc = MulticlassAccuracy(n, average="micro", ignore_index=IGNORE_LABEL)
        self.test_acc = MulticlassAccuracy(n, average="micro", ignore_index=IGNORE_LABEL)
        self._history: History | None = None

    checkpoint_key = "dnas_train"

    def checkpoint_identity(self) -> dict[str, Any]:
        if self._identity is not None:
            return dict(self._identity)
        return {
            "space_fingerprint": self.child.space.fingerprint(),
            "arch": json.dumps(self.child.arch.to_dict()["blocks"], sort_keys=True),
        }

    def check_checkpoint_identity(self, state: dict[str, Any]) -> None:
        if self._identity is not None:
            if any(state.get(k) != v for k, v in self._identity.items()):
                raise CheckpointError(
                    "the checkpoint trained another network or choice; resume with the arch= "
                    "it was started with"
                )
            return
        if state.get("space_fingerprint") != self.child.space.fingerprint():
            raise CheckpointError("the checkpoint trained a network of another space")
        if state.get("arch") != self.checkpoint_identity()["arch"]:
            raise CheckpointError(
                "the checkpoint trained another architecture; resume with the arch= it was "
                "started with"
            )

    def on_train_epoch_start(self) -> None:
        self.restore_rng_after_resume()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, R, R]`` → logits ``[B, num_classes]``."""
        return self.child(x)

    def configure_optimizers(self):
        opt = self._optimizer(self.child.parameters())
        total = int(self.trainer.estimated_stepping_batches)
        epochs = max(1, int(self.trainer.max_epochs or 1))
        warmup = round(self.warmup_epochs * total / epochs)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch["weights"] if isinstance(batch, dict) else batch
        logits = self.child(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the training loss is {float(loss.detach())} at epoch {self.current_epoch}, batch "
                f"{batch_idx} (global step {self.global_step}); try a smaller learning rate"
            )
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("train/acc", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.val_acc.update(self.child(x), y)

    def on_validation_epoch_end(self) -> None:
        acc = self.val_acc.compute()
        self.val_acc.reset()
        self.log("val/acc", acc, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.test_acc.update(self.child(x), y)

    def on_test_epoch_end(self) -> None:
        self.log("test/acc", self.test_acc.compute())
        self.test_acc.reset()

    def configure_callbacks(self) -> list[pl.Callback]:
        """The training's history (one row per epoch: loss, validation accuracy); the same one
        each time (Lightning asks again at ``test`` and replaces the trainer's)."""
        if self._history is None:
            self._history = History(
                train={"train/loss_epoch": "train_loss"}, val={"val/acc": "val_acc"}
            )
        return [self._history]
