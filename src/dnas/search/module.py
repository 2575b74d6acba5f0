"""The Lightning search module: first-order bi-level optimisation of weights and architecture.

Weight steps (SGD) on the weight split, architecture steps (Adam) on the architecture split with
the task loss plus a budget term on the expected cost (DESIGN.md, "Loss, schedule and derivation").
The first ``warmup_epochs`` train weights only, with every choice sampled uniformly; after that the
supernet samples hard Gumbel-softmax kernels whose temperature decays exponentially per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from dnas.cost.expected import ExpectedCost
from dnas.cost.table import CostTable
from dnas.cost.targets import Targets
from dnas.derive import derive_within_budget
from dnas.search.losses import BudgetLoss
from dnas.supernet import SuperNet, bn_statistics, load_bn_statistics, recalibrate_bn


class SearchModule(pl.LightningModule):
    """Differentiable search of kernel, width and bits under a BitFusion budget.

    Args:
        space: the search space (``dnas.space.SearchSpace``).
        table: its cost table.
        targets: the budget.
        budget: the budget term.
        weight_optimizer: ``params -> Optimizer`` for the supernet weights (e.g. a partial SGD).
        arch_optimizer: ``params -> Optimizer`` for the architecture parameters.
        weight_scheduler: ``optimizer -> LRScheduler`` stepped per epoch, or None.
        warmup_epochs: epochs of weight-only training with uniformly sampled choices.
        tau0, tau_min: Gumbel-softmax temperature at the first search epoch and the last.
        hard: straight-through one-hot Gumbel samples.
        bn_batches: batches used to re-estimate batch-norm statistics before evaluating a derived
            architecture inside the supernet.
        fill_budget: derive with ``fill=True``: after meeting the budget, round choices up where
            the budget still allows (``dnas.derive.budget.fill_budget``).
    """

    def __init__(
        self,
        space,
        table: CostTable,
        targets: Targets,
        budget: BudgetLoss,
        weight_optimizer: Callable[..., torch.optim.Optimizer],
        arch_optimizer: Callable[..., torch.optim.Optimizer],
        weight_scheduler: Callable[..., Any] | None = None,
        warmup_epochs: int = 1,
        tau0: float = 5.0,
        tau_min: float = 0.5,
        hard: bool = True,
        bn_batches: int = 20,
        fill_budget: bool = False,
    ) -> None:
        super().__init__()
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        if not 0 < tau_min <= tau0:
            raise ValueError(f"need 0 < tau_min <= tau0, got tau0={tau0}, tau_min={tau_min}")
        self.save_hyperparameters(
            {
                "warmup_epochs": warmup_epochs,
                "tau0": tau0,
                "tau_min": tau_min,
                "hard": hard,
                "budget": budget.kind,
                "targets": targets.active(),
                "space": space.name,
            }
        )
        self.automatic_optimization = False
        self.space, self.table, self.targets = space, table, targets
        self.supernet = SuperNet(space, tau=tau0, hard=hard)
        self.expected_cost = ExpectedCost(table, space)
        self.budget = budget
        self._weight_opt, self._arch_opt, self._sched = (
            weight_optimizer,
            arch_optimizer,
            weight_scheduler,
        )
        self.warmup_epochs, self.tau0, self.tau_min = warmup_epochs, tau0, tau_min
        self.bn_batches = bn_batches
        self.fill_budget = bool(fill_budget)
        self.val_acc = MulticlassAccuracy(space.num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(space.num_classes, average="micro")
        self.history: list[dict[str, float]] = []
        self.derived = None
        self.derived_cost: dict[str, float] = {}
        self._supernet_bn: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------------------ optimisers
    def configure_optimizers(self):
        w_opt = self._weight_opt(self.supernet.weight_parameters())
        a_opt = self._arch_opt(self.supernet.arch_parameters())
        if self._sched is None:
            return [w_opt, a_opt]
        return [w_opt, a_opt], [{"scheduler": self._sched(w_opt), "interval": "epoch"}]

    @property
    def searching(self) -> bool:
        return self.current_epoch >= self.warmup_epochs

    def tau_at(self, epoch: int) -> float:
        """Exponential decay from tau0 (first search epoch) to tau_min (last epoch)."""
        max_epochs = self.trainer.max_epochs if self._trainer is not None else epoch + 1
        n = max(1, (max_epochs or 1) - self.warmup_epochs - 1)
        k = min(max(epoch - self.warmup_epochs, 0), n)
        return self.tau0 * (self.tau_min / self.tau0) ** (k / n)

    # ----------------------------------------------------------------------------------- train
    def on_train_epoch_start(self) -> None:
        self.supernet.tau = self.tau_at(self.current_epoch)

    def training_step(self, batch, batch_idx: int) -> None:
        w_opt, a_opt = self.optimizers()
        xw, yw = batch["weights"] if isinstance(batch, dict) else batch
        self.supernet.set_mode("gumbel" if self.searching else "uniform")
        logits = self.supernet(xw)
        loss = F.cross_entropy(logits, yw)
        w_opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        w_opt.step()
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("train/acc", (logits.argmax(1) == yw).float().mean(), on_step=False, on_epoch=True)
        if not self.searching or not isinstance(batch, dict) or "arch" not in batch:
            return
        xa, ya = batch["arch"]
        ce = F.cross_entropy(self.supernet(xa), ya)
        expected = self.expected_cost(self.supernet.relaxed())
        term = self.budget(ce, expected)
        a_opt.zero_grad(set_to_none=True)
        self.manual_backward(ce + term, inputs=list(self.supernet.arch_parameters()))
        a_opt.step()
        self.supernet.clamp_arch_()
        self.budget.update(expected)
        self.log("arch/loss", ce + term, on_step=False, on_epoch=True)
        self.log("arch/budget_term", term, on_step=False, on_epoch=True)

    def on_train_epoch_end(self) -> None:
        scheds = self.lr_schedulers()
        for sched in scheds if isinstance(scheds, list) else [scheds]:
            if sched is not None:
                sched.step()
        with torch.no_grad():
            expected = self.expected_cost(self.supernet.relaxed())
            entropy = float(self.supernet.entropy())
        self.log("cost/expected_latency_ms", expected["latency_ms"].float())
        self.log("cost/expected_energy_mj", expected["energy_mj"].float())
        self.log("arch/entropy", entropy)
        self.log("arch/tau", float(self.supernet.tau))
        for i, m in enumerate(self.targets.active()):
            self.log(f"budget/lambda_{m}", self.budget.lam[i])
        self._record(
            expected_latency_ms=float(expected["latency_ms"]),
            expected_energy_mj=float(expected["energy_mj"]),
            tau=float(self.supernet.tau),
            entropy=entropy,
        )

    # ------------------------------------------------------------------------ derive and eval
    def derive(self):
        """The current derived architecture (within budget) and its exact cost."""
        with torch.no_grad():
            arch, cost, _ = derive_within_budget(
                self.space, self.table, self.supernet.relaxed(), self.targets, fill=self.fill_budget
            )
        self.derived, self.derived_cost = arch, cost
        return arch, cost

    def _prepare_derived(self, loader_fn: Callable | None) -> None:
        """Run the derived architecture with BN statistics re-estimated for it.

        The supernet's own statistics are kept aside and put back by ``_restore_supernet_bn``
        after the evaluation, so training and the saved ``supernet.pt`` keep them.
        """
        arch, _ = self.derive()
        self.supernet.set_mode("fixed", arch)
        if loader_fn is not None and self.bn_batches > 0:
            self._supernet_bn = bn_statistics(self.supernet)
            recalibrate_bn(self.supernet, loader_fn(self.bn_batches), self.bn_batches)

    def _restore_supernet_bn(self) -> None:
        if self._supernet_bn is not None:
            load_bn_statistics(self.supernet, self._supernet_bn)
            self._supernet_bn = None

    def _bn_loader(self):
        dm = getattr(self.trainer, "datamodule", None)
        return getattr(dm, "bn_recalibration_loader", None)

    def on_validation_epoch_start(self) -> None:
        self._prepare_derived(self._bn_loader())
        self.val_acc.reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.val_acc.update(self.supernet(x), y)

    def on_validation_epoch_end(self) -> None:
        self._restore_supernet_bn()
        acc = self.val_acc.compute()
        self.log("val/acc", acc, prog_bar=True)
        self.log("cost/derived_latency_ms", self.derived_cost["latency_ms"], prog_bar=True)
        self.log("cost/derived_energy_mj", self.derived_cost["energy_mj"])
        if not self.trainer.sanity_checking:
            self._record(
                val_acc=float(acc),
                derived_latency_ms=self.derived_cost["latency_ms"],
                derived_energy_mj=self.derived_cost["energy_mj"],
            )

    def on_test_epoch_start(self) -> None:
        self._prepare_derived(self._bn_loader())
        self.test_acc.reset()

    def test_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.test_acc.update(self.supernet(x), y)

    def on_test_epoch_end(self) -> None:
        self._restore_supernet_bn()
        self.log("test/acc", self.test_acc.compute())

    def _record(self, **values: float) -> None:
        epoch = self.current_epoch
        if not self.history or self.history[-1]["epoch"] != epoch:
            self.history.append({"epoch": epoch})
        self.history[-1].update({k: v for k, v in values.items() if math.isfinite(v)})
