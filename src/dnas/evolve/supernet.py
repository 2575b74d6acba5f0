"""Single-path supernet training with uniform sampling (APQ's and once-for-all's weight sharing).

Every training step draws each choice (kernel incl. skip, width, bits) uniformly and trains that
sub-network's weights; no architecture parameters are learned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from dnas.checkpoint import CheckpointError, ResumableModule
from dnas.errors import NonFiniteLossError
from dnas.supernet import SuperNet


class UniformSupernetModule(ResumableModule, pl.LightningModule):
    """Train a ``SuperNet``'s weights on uniformly sampled sub-networks.

    Args:
        space: the search space.
        weight_optimizer: ``params -> Optimizer``.
        weight_scheduler: ``optimizer -> LRScheduler`` stepped per epoch, or None.
    """

    def __init__(
        self,
        space,
        weight_optimizer: Callable[..., torch.optim.Optimizer],
        weight_scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self.supernet = SuperNet(space)
        self.supernet.set_mode("uniform")
        self._opt, self._sched = weight_optimizer, weight_scheduler

    checkpoint_key = "dnas_uniform_supernet"

    def checkpoint_identity(self) -> dict[str, Any]:
        return {"space_fingerprint": self.supernet.space.fingerprint()}

    def check_checkpoint_identity(self, state: dict[str, Any]) -> None:
        if state.get("space_fingerprint") != self.supernet.space.fingerprint():
            raise CheckpointError("the checkpoint trained a supernet of another space")

    def on_train_epoch_start(self) -> None:
        self.restore_rng_after_resume()

    def configure_optimizers(self):
        opt = self._opt(self.supernet.weight_parameters())
        if self._sched is None:
            return opt
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": self._sched(opt), "interval": "epoch"},
        }

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch["weights"] if isinstance(batch, dict) else batch
        self.supernet.set_mode("uniform")
        logits = self.supernet(x)
        loss = F.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the supernet's training loss is {float(loss.detach())} at epoch {self.current_epoch}, "
                f"batch {batch_idx} (global step {self.global_step})"
            )
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        return loss
