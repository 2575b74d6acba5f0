"""The Lightning search module: first-order bi-level optimisation of weights and architecture.

Weight steps (SGD) on the weight split, architecture steps (Adam) on the architecture split with
the task loss plus a budget term on the expected cost (docs/DESIGN.md, "Loss, schedule and derivation").
The first ``warmup_epochs`` train weights only, with every choice sampled uniformly; after that the
supernet samples hard Gumbel-softmax kernels whose temperature decays exponentially per epoch.

Several targets (a front) are searched in one run: one architecture distribution per target, all
on the same supernet weights. Training steps take the targets in turn: step i samples the weight
path from distribution ``i mod K`` and takes that distribution's architecture step against its own
budget, so a K-target front costs about one search instead of K.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from dnas.checkpoint import CHECKPOINT_FORMAT, CheckpointError, ResumableModule
from dnas.cost.expected import ExpectedCost
from dnas.cost.table import CostTable
from dnas.cost.targets import Targets
from dnas.derive import derive_within_budget
from dnas.errors import DnasError, NonFiniteLossError
from dnas.search.losses import BudgetLoss
from dnas.supernet import SuperNet, bn_statistics, load_bn_statistics, recalibrate_bn


class SearchModule(ResumableModule, pl.LightningModule):
    """Differentiable search of kernel, width and bits under a BitFusion budget.

    Args:
        space: the search space (``dnas.space.SearchSpace``).
        table: its cost table.
        targets: the budget, or a list of budgets searched together (one distribution each).
        budget: the budget term (one per target when ``targets`` is a list).
        weight_optimizer: ``params -> Optimizer`` for the supernet weights (e.g. a partial SGD).
        arch_optimizer: ``params -> Optimizer`` for the architecture parameters (one per target).
        weight_scheduler: ``optimizer -> LRScheduler`` stepped per epoch, or None.
        warmup_epochs: epochs of weight-only training with uniformly sampled choices.
        tau0, tau_min: Gumbel-softmax temperature at the first search epoch and the last.
        hard: straight-through one-hot Gumbel samples.
        bn_batches: batches used to re-estimate batch-norm statistics before evaluating a derived
            architecture inside the supernet.
        derive: how the discrete architecture is read off the distribution within the budget:
            ``"budget"`` (the most preferred network that spends the budget), ``"fill"`` or
            ``"argmax"`` (``dnas.derive.derive_within_budget``).
    """

    def __init__(
        self,
        space,
        table: CostTable,
        targets: Targets | Sequence[Targets],
        budget: BudgetLoss | Sequence[BudgetLoss],
        weight_optimizer: Callable[..., torch.optim.Optimizer],
        arch_optimizer: Callable[..., torch.optim.Optimizer],
        weight_scheduler: Callable[..., Any] | None = None,
        warmup_epochs: int = 1,
        tau0: float = 5.0,
        tau_min: float = 0.5,
        hard: bool = True,
        bn_batches: int = 20,
        derive: str = "budget",
    ) -> None:
        super().__init__()
        from dnas.derive.budget import DERIVE_STRATEGIES

        if derive not in DERIVE_STRATEGIES:
            raise DnasError(f"search.derive={derive!r} is not one of {DERIVE_STRATEGIES}")
        if warmup_epochs < 0:
            raise DnasError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        if not 0 < tau_min <= tau0:
            raise DnasError(f"need 0 < tau_min <= tau0, got tau0={tau0}, tau_min={tau_min}")
        front = [targets] if isinstance(targets, Targets) else list(targets)
        budgets = [budget] if isinstance(budget, BudgetLoss) else list(budget)
        if not front or len(budgets) != len(front):
            raise DnasError(
                f"need one budget term per target, got {len(front)} targets, {len(budgets)} terms"
            )
        self.save_hyperparameters(
            {
                "warmup_epochs": warmup_epochs,
                "tau0": tau0,
                "tau_min": tau_min,
                "hard": hard,
                "budget": budgets[0].kind,
                "targets": [t.active() for t in front] if len(front) > 1 else front[0].active(),
                "space": space.name,
                "derive": derive,
            }
        )
        self.automatic_optimization = False
        self.space, self.table, self.front = space, table, front
        self.supernet = SuperNet(space, tau=tau0, hard=hard)
        self.expected_cost = ExpectedCost(table, space)
        self.budgets = nn.ModuleList(budgets)
        if len(front) > 1:  # the distributions not loaded in the supernet wait here
            self.banks = nn.ModuleList(
                nn.ParameterList(
                    nn.Parameter(p.detach().clone(), requires_grad=False)
                    for p in self.supernet.arch_parameters()
                )
                for _ in front
            )
            # which distribution the supernet holds now (a buffer: checkpoints keep it right)
            self.register_buffer("loaded_distribution", torch.zeros((), dtype=torch.long))
        self._weight_opt, self._arch_opt, self._sched = (
            weight_optimizer,
            arch_optimizer,
            weight_scheduler,
        )
        self.warmup_epochs, self.tau0, self.tau_min = warmup_epochs, tau0, tau_min
        self.bn_batches = bn_batches
        self.derive_strategy = derive
        self.val_accs = nn.ModuleList(
            MulticlassAccuracy(space.num_classes, average="micro") for _ in front
        )
        self.test_accs = nn.ModuleList(
            MulticlassAccuracy(space.num_classes, average="micro") for _ in front
        )
        self.history: list[dict[str, float]] = []
        self.derived_front: list = [None] * len(front)
        self.derived_front_cost: list[dict[str, float]] = [{} for _ in front]
        self._eval_archs: list = []
        self._eval_bn: list[dict[str, torch.Tensor] | None] = []
        self._supernet_bn: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------------------- targets
    @property
    def num_targets(self) -> int:
        return len(self.front)

    @property
    def targets(self) -> Targets:
        """The (first) target: the only one unless a front is searched."""
        return self.front[0]

    @property
    def budget(self) -> BudgetLoss:
        return self.budgets[0]

    @property
    def derived(self):
        """The derived architecture of the (first) target."""
        return self.derived_front[0]

    @property
    def derived_cost(self) -> dict[str, float]:
        return self.derived_front_cost[0]

    def _suffix(self, k: int) -> str:
        return f"_t{k}" if self.num_targets > 1 else ""

    @torch.no_grad()
    def use_distribution(self, k: int) -> None:
        """Load target k's architecture distribution into the supernet (a front's step i uses
        ``i mod K``); the one loaded before goes back to its bank."""
        if self.num_targets == 1 or k == int(self.loaded_distribution):
            return
        live = self.supernet.arch_parameters()
        for p, q in zip(live, self.banks[int(self.loaded_distribution)]):
            q.copy_(p)
        for p, q in zip(live, self.banks[k]):
            p.copy_(q)
        self.loaded_distribution.fill_(k)

    def distribution_state(self, k: int) -> dict[str, torch.Tensor]:
        """The supernet's state dict with target k's distribution in its architecture entries."""
        self.use_distribution(k)
        return {n: t.detach().clone() for n, t in self.supernet.state_dict().items()}

    # ------------------------------------------------------------------------------ optimisers
    def configure_optimizers(self):
        w_opt = self._weight_opt(self.supernet.weight_parameters())
        # One optimiser per distribution: each keeps its own moments over the shared live tensors.
        a_opts = [self._arch_opt(self.supernet.arch_parameters()) for _ in self.front]
        if self._sched is None:
            return [w_opt, *a_opts]
        return [w_opt, *a_opts], [{"scheduler": self._sched(w_opt), "interval": "epoch"}]

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
        self.restore_rng_after_resume()  # the first epoch after a resume continues the stream
        self.supernet.tau = self.tau_at(self.current_epoch)

    def training_step(self, batch, batch_idx: int) -> None:
        w_opt, *a_opts = self.optimizers()
        k = batch_idx % self.num_targets
        self.use_distribution(k)
        xw, yw = batch["weights"] if isinstance(batch, dict) else batch
        self.supernet.set_mode("gumbel" if self.searching else "uniform")
        logits = self.supernet(xw)
        loss = F.cross_entropy(logits, yw)
        self._check_finite(loss, "weight", batch_idx)
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
        budget = self.budgets[k]
        term = budget(ce, expected)
        self._check_finite(ce + term, "architecture", batch_idx)
        a_opts[k].zero_grad(set_to_none=True)
        self.manual_backward(ce + term, inputs=list(self.supernet.arch_parameters()))
        a_opts[k].step()
        self.supernet.clamp_arch_()
        budget.update(expected)
        sfx = self._suffix(k)
        self.log(f"arch/loss{sfx}", ce + term, on_step=False, on_epoch=True)
        self.log(f"arch/budget_term{sfx}", term, on_step=False, on_epoch=True)

    def _check_finite(self, loss: torch.Tensor, which: str, batch_idx: int) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the {which} loss is {float(loss.detach())} at epoch {self.current_epoch}, batch "
                f"{batch_idx} (global step {self.global_step}); try a smaller learning rate"
            )

    def on_train_epoch_end(self) -> None:
        scheds = self.lr_schedulers()
        for sched in scheds if isinstance(scheds, list) else [scheds]:
            if sched is not None:
                sched.step()
        record: dict[str, float] = {"tau": float(self.supernet.tau)}
        self.log("arch/tau", float(self.supernet.tau))
        for k, targets in enumerate(self.front):
            self.use_distribution(k)
            with torch.no_grad():
                expected = self.expected_cost(self.supernet.relaxed())
                entropy = float(self.supernet.entropy())
            sfx = self._suffix(k)
            self.log(f"cost/expected_latency_ms{sfx}", expected["latency_ms"].float())
            self.log(f"cost/expected_energy_mj{sfx}", expected["energy_mj"].float())
            self.log(f"arch/entropy{sfx}", entropy)
            for i, m in enumerate(targets.active()):
                self.log(f"budget/lambda_{m}{sfx}", self.budgets[k].lam[i])
            record.update(
                {
                    f"expected_latency_ms{sfx}": float(expected["latency_ms"]),
                    f"expected_energy_mj{sfx}": float(expected["energy_mj"]),
                    f"entropy{sfx}": entropy,
                }
            )
        self._record(**record)

    # ------------------------------------------------------------------------ derive and eval
    def derive(self, k: int = 0):
        """Target k's current derived architecture (within its budget) and its exact cost."""
        self.use_distribution(k)
        with torch.no_grad():
            arch, cost, _ = derive_within_budget(
                self.space,
                self.table,
                self.supernet.relaxed(),
                self.front[k],
                strategy=self.derive_strategy,
            )
        self.derived_front[k], self.derived_front_cost[k] = arch, cost
        return arch, cost

    def _prepare_derived(self, loader_fn: Callable | None) -> None:
        """Derive every target's architecture and re-estimate BN statistics for each.

        The supernet's own statistics are kept aside and put back by ``_restore_supernet_bn``
        after the evaluation, so training and the saved ``supernet.pt`` keep them.
        """
        recalibrate = loader_fn is not None and self.bn_batches > 0
        if recalibrate:
            self._supernet_bn = bn_statistics(self.supernet)
        self._eval_archs, self._eval_bn = [], []
        for k in range(self.num_targets):
            arch, _ = self.derive(k)
            self.supernet.set_mode("fixed", arch)
            if recalibrate:
                recalibrate_bn(self.supernet, loader_fn(self.bn_batches), self.bn_batches)
            self._eval_archs.append(arch)
            many = recalibrate and self.num_targets > 1
            self._eval_bn.append(bn_statistics(self.supernet) if many else None)

    def _eval_forward(self, x: torch.Tensor):
        """(target, logits) of every derived architecture on x (one at a time)."""
        for k, arch in enumerate(self._eval_archs):
            if self.num_targets > 1:
                self.supernet.set_mode("fixed", arch)
                if self._eval_bn[k] is not None:
                    load_bn_statistics(self.supernet, self._eval_bn[k])
            yield k, self.supernet(x)

    def _restore_supernet_bn(self) -> None:
        if self._supernet_bn is not None:
            load_bn_statistics(self.supernet, self._supernet_bn)
            self._supernet_bn = None
        self._eval_bn = []

    def _bn_loader(self):
        dm = getattr(self.trainer, "datamodule", None)
        return getattr(dm, "bn_recalibration_loader", None)

    def on_validation_epoch_start(self) -> None:
        self._prepare_derived(self._bn_loader())
        for m in self.val_accs:
            m.reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        for k, logits in self._eval_forward(x):
            self.val_accs[k].update(logits, y)

    def on_validation_epoch_end(self) -> None:
        self._restore_supernet_bn()
        accs = [m.compute() for m in self.val_accs]
        record: dict[str, float] = {}
        if self.num_targets > 1:
            self.log("val/acc", torch.stack(accs).mean(), prog_bar=True)  # the front's mean
        for k, acc in enumerate(accs):
            sfx, cost = self._suffix(k), self.derived_front_cost[k]
            self.log(f"val/acc{sfx}", acc, prog_bar=self.num_targets == 1)
            self.log(
                f"cost/derived_latency_ms{sfx}", cost["latency_ms"], prog_bar=self.num_targets == 1
            )
            self.log(f"cost/derived_energy_mj{sfx}", cost["energy_mj"])
            record.update(
                {
                    f"val_acc{sfx}": float(acc),
                    f"derived_latency_ms{sfx}": cost["latency_ms"],
                    f"derived_energy_mj{sfx}": cost["energy_mj"],
                }
            )
        if not self.trainer.sanity_checking:
            self._record(**record)

    def on_test_epoch_start(self) -> None:
        self._prepare_derived(self._bn_loader())
        for m in self.test_accs:
            m.reset()

    def test_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        for k, logits in self._eval_forward(x):
            self.test_accs[k].update(logits, y)

    def on_test_epoch_end(self) -> None:
        self._restore_supernet_bn()
        for k, m in enumerate(self.test_accs):
            self.log(f"test/acc{self._suffix(k)}", m.compute())

    def history_for(self, k: int) -> list[dict[str, float]]:
        """The history of target k alone, with the keys of a one-target search."""
        if self.num_targets == 1:
            return self.history
        out = []
        for h in self.history:
            row = {}
            for key, v in h.items():
                m = re.fullmatch(r"(.*)_t(\d+)", key)
                if m is None:
                    row[key] = v  # shared: epoch, tau
                elif int(m.group(2)) == k:
                    row[m.group(1)] = v
            out.append(row)
        return out

    def _record(self, **values: float) -> None:
        epoch = self.current_epoch
        if not self.history or self.history[-1]["epoch"] != epoch:
            self.history.append({"epoch": epoch})
        self.history[-1].update({k: v for k, v in values.items() if math.isfinite(v)})

    # ------------------------------------------------------------------------------ checkpoints
    checkpoint_key = "dnas_search"

    def checkpoint_identity(self) -> dict[str, Any]:
        return {
            "space": self.space.name,
            "space_fingerprint": self.space.fingerprint(),
            "targets": [dict(t.active()) for t in self.front],
        }

    def check_checkpoint_identity(self, state: dict[str, Any]) -> None:
        check_checkpoint_state(state, self.space, self.front)


CHECKPOINT_KEY = SearchModule.checkpoint_key


def check_checkpoint_state(state: dict[str, Any], space, front: Sequence[Targets]) -> None:
    """Refuse a checkpoint of another space, other targets or another format, naming both."""
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint format {state.get('format')!r}; this dnas reads {CHECKPOINT_FORMAT}"
        )
    if state.get("space_fingerprint") != space.fingerprint():
        raise CheckpointError(
            f"the checkpoint searched space {state.get('space')!r} "
            f"({state.get('space_fingerprint')}), this run has {space.name!r} "
            f"({space.fingerprint()}); resume with the space it was written with"
        )
    want = [dict(t.active()) for t in front]
    got = state.get("targets")
    if (
        got is None
        or len(got) != len(want)
        or any(
            set(g) != set(w) or any(not math.isclose(g[m], w[m], rel_tol=1e-9) for m in w)
            for g, w in zip(got, want)
        )
    ):
        raise CheckpointError(
            f"the checkpoint searched targets {got}, this run has {want}; "
            "resume with the same target (or front)"
        )
