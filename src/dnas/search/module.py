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

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from dnas.checkpoint import CHECKPOINT_FORMAT, CheckpointError, ResumableModule
from dnas.cost.expected import ExpectedCost
from dnas.cost.hardware import BitFusionConfig, load_hardware
from dnas.cost.levels import BIT_LEVELS, restrict_table, search_levels
from dnas.cost.table import CostTable, load_or_build
from dnas.cost.targets import BudgetError, Targets, TargetSpec, check_jointly_feasible
from dnas.data.loader import IGNORE_LABEL
from dnas.data.module import check_data_fits_space
from dnas.derive import derive_within_budget
from dnas.errors import DnasError, NonFiniteLossError
from dnas.history import History
from dnas.ops.conv import KERNEL_WEIGHTS
from dnas.search.losses import BudgetLoss
from dnas.space import SearchSpace, load_space
from dnas.supernet import SuperNet, bn_statistics, load_bn_statistics, recalibrate_bn


def resolve_front(
    space: SearchSpace,
    table: CostTable,
    target: TargetSpec | None,
    front: Sequence[TargetSpec] | None,
) -> list[Targets]:
    """The budgets of a search as absolute targets: ``front`` if given, else ``[target]``.

    Raises:
        BudgetError: an empty front, a front member without a budget, a target outside the space
            (see ``resolve_targets``) or two targets no architecture meets together.
    """
    extremes = table.extremes(space)
    if front is None:
        resolved = [(target or TargetSpec()).resolve(extremes)]
    else:
        if not front:
            raise BudgetError(
                "front must be a non-empty list of targets, e.g. "
                "'front=[{latency_frac:0.15},{latency_frac:0.3},{energy_frac:0.3}]'"
            )
        resolved = [t.resolve(extremes) for t in front]
        for i, t in enumerate(resolved):
            if not t.active():
                raise BudgetError(
                    f"front[{i}] sets no budget; give latency_ms/_frac or energy_mj/_frac"
                )
    for t in resolved:
        check_jointly_feasible(t, space, table)
    return resolved


WEIGHT_PATHS = ("sampled", "uniform")

OptimizerCallable = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
LRSchedulerCallable = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]
BudgetLossCallable = Callable[[Targets], BudgetLoss]


class SearchModule(ResumableModule, pl.LightningModule):
    """Differentiable search of kernel, width and bits under a BitFusion budget.

    Every argument is a plain typed value (or a callable given by class path and arguments), so
    ``dnas-fit`` (LightningCLI) builds it from YAML; ``dnas-search`` (Hydra) passes the same
    arguments, with the space, hardware and table it already loaded. Whatever can be wrong with
    them (an unknown space, a stale table, an unreachable budget) fails here, before training.

    Under DDP every process holds the same architecture parameters (their gradients are
    averaged, ``_arch_backward``) and evaluates the same derived networks on its share of the
    data; accuracies are synced by torchmetrics, and every logged value with ``sync_dist`` (the
    costs, temperature and entropy are equal on all processes anyway).

    Args:
        weight_optimizer: ``params -> Optimizer`` for the supernet weights (e.g. a partial SGD).
        arch_optimizer: ``params -> Optimizer`` for the architecture parameters (one per target).
        budget: ``targets -> BudgetLoss``, the budget term (e.g. ``partial(BudgetLoss,
            kind="hinge", lam=2.0)``); one is built per target.
        space: a built-in space name, a YAML file of one, or a ``SearchSpace``.
        target: the budget (absolute or a fraction of the space); None: unconstrained.
        front: several budgets searched together, one architecture distribution each; when set,
            ``target`` is ignored.
        weight_scheduler: ``optimizer -> LRScheduler`` stepped per epoch, or None.
        hardware: a built-in hardware name, a YAML file of one, or a ``BitFusionConfig``.
        table: the cost table: a ``CostTable``, a file (built there if missing or stale), or None
            for the cache (``$DNAS_CACHE`` or ``~/.cache/dnas/tables/``).
        table_backend: backend that builds a missing table (``auto``, ``torch``, ``triton``).
        warmup_epochs: epochs of weight-only training with uniformly sampled choices.
        tau0, tau_min: Gumbel-softmax temperature at the first search epoch and the last.
        hard: straight-through one-hot Gumbel samples.
        bn_batches: batches used to re-estimate batch-norm statistics before validating a derived
            architecture inside the supernet.
        test_bn_batches: the same before testing; None: ``bn_batches``.
        derive: how the discrete architecture is read off the distribution within the budget:
            ``"budget"`` (the most preferred network that spends the budget), ``"fill"`` or
            ``"argmax"`` (``dnas.derive.derive_within_budget``).
        arch_every: an architecture step every this many batches of a search epoch (1: every
            batch). An architecture step costs about as much as a weight step (a forward and a
            backward through the supernet), so 2 (the default) makes a search epoch ~25 % cheaper;
            measured in the head-to-head, it derived the same networks as 1 at two of four
            targets and was as accurate within the seed-to-seed spread. In a front,
            batches ``i·arch_every … (i+1)·arch_every − 1`` sample target ``i mod K``'s
            distribution and end with its step.
        num_classes: the classifier's outputs, in place of the space's own ``num_classes`` (the
            cost table is then the one for that classifier); None: the space's. ``dnas-fit``
            sets it from the data module.
        bit_levels: ``"all"``: every bit-width of the space is a choice; ``"hardware"``: only
            the levels whose cost differs on the hardware for the targets' metrics
            (``dnas.cost.levels``: 2, 4, 8 on BitFusion, and 6 with an energy target), so that
            the fractional bit index interpolates between costs that differ. The derived
            network is a network of the full space either way, priced by its table.
        derive_depth: how a skippable block's depth is read off its distribution
            (``dnas.derive.budget.kernel_scores``): ``"joint"``, skip against each kernel alone;
            ``"marginal"``, skip against keeping the block with any kernel.
        weight_paths: which sub-network a weight step trains once the search has begun:
            ``"sampled"``, a draw of the architecture distribution (Gumbel); ``"uniform"``, every
            choice drawn uniformly as in the warm-up (SPOS, FairNAS), so the paths the
            distribution favours are not trained more than the others and the architecture
            steps compare paths trained alike.
        kernel_weights: ``"shared"``: a block's kernel sizes are centre crops of one depthwise
            weight (once-for-all); ``"separate"``: one weight per size (FBNet). With one weight
            the arch gradient between kernel ``k`` and a larger one is the contribution of the
            larger one's outer ring alone, weights trained to lower the loss, so the larger kernel
            looks better inside the supernet whether or not it trains better on its own;
            separate weights compare kernels each trained for itself.
    """

    def __init__(
        self,
        *,
        weight_optimizer: OptimizerCallable,
        arch_optimizer: OptimizerCallable,
        budget: BudgetLossCallable,
        space: str | SearchSpace = "fmnist_mbv2",
        target: TargetSpec | None = None,
        front: list[TargetSpec] | None = None,
        weight_scheduler: LRSchedulerCallable | None = None,
        hardware: str | BitFusionConfig = "bitfusion",
        table: str | CostTable | None = None,
        table_backend: str = "auto",
        warmup_epochs: int = 1,
        tau0: float = 5.0,
        tau_min: float = 0.5,
        hard: bool = True,
        bn_batches: int = 20,
        test_bn_batches: int | None = None,
        derive: str = "budget",
        arch_every: int = 2,
        num_classes: int | None = None,
        bit_levels: str = "all",
        derive_depth: str = "joint",
        weight_paths: str = "sampled",
        kernel_weights: str = "shared",
    ) -> None:
        super().__init__()
        from dnas.derive.budget import DEPTH_RULES, DERIVE_STRATEGIES

        if derive not in DERIVE_STRATEGIES:
            raise DnasError(f"search.derive={derive!r} is not one of {DERIVE_STRATEGIES}")
        if derive_depth not in DEPTH_RULES:
            raise DnasError(
                f"search.derive_depth={derive_depth!r} is not one of {list(DEPTH_RULES)}"
            )
        if kernel_weights not in KERNEL_WEIGHTS:
            raise DnasError(
                f"search.kernel_weights={kernel_weights!r} is not one of {list(KERNEL_WEIGHTS)}"
            )
        if bit_levels not in BIT_LEVELS:
            raise DnasError(f"search.bit_levels={bit_levels!r} is not one of {list(BIT_LEVELS)}")
        check_search_settings(
            weight_paths, warmup_epochs, arch_every, tau0, tau_min, bn_batches, test_bn_batches
        )
        space = space if isinstance(space, SearchSpace) else load_space(space)
        if num_classes is not None:
            if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
                raise DnasError(f"num_classes must be an integer >= 2 or None, got {num_classes!r}")
            if num_classes != space.num_classes:
                space = dataclasses.replace(space, num_classes=num_classes)
        hw = hardware if isinstance(hardware, BitFusionConfig) else load_hardware(hardware)
        space.validate_bits(hw.pmax_bits)
        self.table_path: Path | None = None
        self.table_built = False
        if not isinstance(table, CostTable):
            table, self.table_path, self.table_built = load_or_build(
                space, hw, table, table_backend
            )
        front = resolve_front(space, table, target, front)
        budgets = [budget(t) for t in front]
        metrics = sorted({m for t in front for m in t.active()})
        search_space = search_levels(bit_levels, space, hw.pmax_bits, hw.pmin_bits, metrics)
        search_table = table
        if search_space.fingerprint() != space.fingerprint():
            search_table = restrict_table(table, space, search_space)
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
                "arch_every": arch_every,
                "bit_levels": bit_levels,
                "derive_depth": derive_depth,
                "weight_paths": weight_paths,
                "kernel_weights": kernel_weights,
            }
        )
        self.space, self.table = space, table
        # What the supernet, the expected cost and the derivation see: ``space`` itself, or its
        # bit levels only (``bit_levels``); results are networks of ``space``.
        self.search_space, self.search_table = search_space, search_table
        self.bit_levels = bit_levels
        self.derive_strategy, self.derive_depth = derive, derive_depth
        self._init_search(
            front=front,
            budgets=budgets,
            supernet=SuperNet(search_space, tau=tau0, hard=hard, kernel_weights=kernel_weights),
            expected_cost=ExpectedCost(search_table, search_space),
            num_classes=space.num_classes,
            weight_optimizer=weight_optimizer,
            arch_optimizer=arch_optimizer,
            weight_scheduler=weight_scheduler,
            warmup_epochs=warmup_epochs,
            tau0=tau0,
            tau_min=tau_min,
            weight_paths=weight_paths,
            bn_batches=bn_batches,
            test_bn_batches=test_bn_batches,
            arch_every=arch_every,
        )

    def _init_search(
        self,
        *,
        front: list,
        budgets: list[BudgetLoss],
        supernet: nn.Module,
        expected_cost: Callable[[Any], dict[str, torch.Tensor]],
        num_classes: int,
        weight_optimizer: OptimizerCallable,
        arch_optimizer: OptimizerCallable,
        weight_scheduler: LRSchedulerCallable | None,
        warmup_epochs: int,
        tau0: float,
        tau_min: float,
        weight_paths: str,
        bn_batches: int,
        test_bn_batches: int | None,
        arch_every: int,
    ) -> None:
        """What every search holds, whatever its network: the supernet, its expected cost (the
        relaxed distribution → ``metric → 0-dim tensor``), one budget and one architecture
        distribution per target, the optimisers, the schedule and the accuracy metrics."""
        self.automatic_optimization = False
        self.front = front
        self.supernet = supernet
        self.expected_cost = expected_cost
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
        check_schedule(weight_optimizer, weight_scheduler)
        self._weight_opt, self._arch_opt, self._sched = (
            weight_optimizer,
            arch_optimizer,
            weight_scheduler,
        )
        self.warmup_epochs, self.tau0, self.tau_min = warmup_epochs, tau0, tau_min
        self.weight_paths = weight_paths
        self.bn_batches = bn_batches
        self.test_bn_batches = bn_batches if test_bn_batches is None else test_bn_batches
        self.arch_every = arch_every
        self.val_accs = nn.ModuleList(
            MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE_LABEL)
            for _ in front
        )
        self.test_accs = nn.ModuleList(
            MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE_LABEL)
            for _ in front
        )
        self._eval_archs: list = []
        self._eval_costs: list[dict[str, float]] = []
        self._eval_bn: list[dict[str, torch.Tensor] | None] = []
        self._supernet_bn: dict[str, torch.Tensor] | None = None
        self._history: History | None = None

    def setup(self, stage: str) -> None:
        """Check the data against the space before any step (a CLI may build them apart)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            check_data_fits_space(self.space, datamodule)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # RNG stream, what was searched
        # ``hparams`` is a summary for loggers (resolved targets, names), not the constructor's
        # arguments; LightningCLI would parse it as model arguments when testing from this
        # checkpoint (``--ckpt_path``). The configuration is kept beside it (``config.yaml``).
        checkpoint.pop(self.CHECKPOINT_HYPER_PARAMS_KEY, None)

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

    def target_suffix(self, k: int) -> str:
        """What target k's metric names end with: ``_t<k>`` in a front (``val/acc_t1``), else
        nothing."""
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
        k = (batch_idx // self.arch_every) % self.num_targets
        self.use_distribution(k)
        xw, yw = batch["weights"] if isinstance(batch, dict) else batch
        sampled = self.searching and self.weight_paths == "sampled"
        self.supernet.set_mode("gumbel" if sampled else "uniform")
        logits = self.supernet(xw)
        loss = F.cross_entropy(logits, yw)
        self._check_finite(loss, "weight", batch_idx)
        w_opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        w_opt.step()
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        acc = (logits.argmax(1) == yw).float().mean()
        self.log("train/acc", acc, on_step=False, on_epoch=True, sync_dist=True)
        if not self.searching or not isinstance(batch, dict) or "arch" not in batch:
            return
        if (batch_idx + 1) % self.arch_every:
            return  # the distribution's step ends its run of batches
        xa, ya = batch["arch"]
        self.supernet.set_mode("gumbel")
        ce = F.cross_entropy(self.supernet(xa), ya)
        expected = self.expected_cost(self.supernet.relaxed())
        budget = self.budgets[k]
        term = budget(ce, expected)
        self._check_finite(ce + term, "architecture", batch_idx)
        self._arch_backward(ce + term)
        a_opts[k].step()
        self.supernet.clamp_arch_()
        budget.update(expected)
        sfx = self.target_suffix(k)
        self.log(f"arch/loss{sfx}", ce + term, on_step=False, on_epoch=True, sync_dist=True)
        self.log(f"arch/budget_term{sfx}", term, on_step=False, on_epoch=True, sync_dist=True)

    def _arch_backward(self, loss: torch.Tensor) -> None:
        """Set the architecture parameters' gradients of ``loss``, averaged over processes.

        Not ``manual_backward(loss, inputs=arch_parameters)``: under DDP, that prepares the
        reducer for every parameter the graph reaches, the supernet weights included; a backward
        restricted to ``inputs`` never gives those a gradient, the reduction never completes, and
        the next step fails with "parameters that were not used in producing the loss". So the
        gradients are taken apart from DDP's reducer and all-reduced here (a few hundred numbers,
        one call); the precision plugin still scales the loss and runs the backward hooks.
        """
        params = self.supernet.arch_parameters()
        precision = self.trainer.precision_plugin
        scaled = precision.pre_backward(loss, self)
        grads = torch.autograd.grad(scaled, params, allow_unused=True, materialize_grads=True)
        precision.post_backward(scaled, self)
        flat = torch.cat([g.reshape(-1) for g in grads])
        flat = self.trainer.strategy.reduce(flat, reduce_op="mean")
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad = g.view_as(p)

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
        self.log("arch/tau", float(self.supernet.tau), sync_dist=True)
        for k, targets in enumerate(self.front):
            self.use_distribution(k)
            with torch.no_grad():
                expected = self.expected_cost(self.supernet.relaxed())
                entropy = float(self.supernet.entropy())
            sfx = self.target_suffix(k)
            self.log(
                f"cost/expected_latency_ms{sfx}", expected["latency_ms"].float(), sync_dist=True
            )
            self.log(f"cost/expected_energy_mj{sfx}", expected["energy_mj"].float(), sync_dist=True)
            self.log(f"arch/entropy{sfx}", entropy, sync_dist=True)
            for i, m in enumerate(targets.active()):
                self.log(f"budget/lambda_{m}{sfx}", self.budgets[k].lam[i], sync_dist=True)

    # ------------------------------------------------------------------------ derive and eval
    def derive(self, k: int = 0):
        """Target k's current derived architecture (within its budget) and its exact cost."""
        self.use_distribution(k)
        with torch.no_grad():
            arch, cost, _ = derive_within_budget(
                self.search_space,
                self.search_table,
                self.supernet.relaxed(),
                self.front[k],
                strategy=self.derive_strategy,
                depth=self.derive_depth,
            )
        # a network of the full space (its bits are choices of both; the costs are the same)
        return dataclasses.replace(arch, space_fingerprint=self.space.fingerprint()), cost

    def _prepare_derived(self, loader_fn: Callable | None, bn_batches: int | None = None) -> None:
        """Derive every target's architecture and re-estimate BN statistics for each.

        Args:
            loader_fn: ``num_batches -> batches`` for the re-estimation, or None (no re-estimation).
            bn_batches: how many batches; None: ``self.bn_batches``.

        The supernet's own statistics are kept aside and put back by ``_restore_supernet_bn``
        after the evaluation, so training and the saved ``supernet.pt`` keep them.
        """
        bn_batches = self.bn_batches if bn_batches is None else bn_batches
        recalibrate = loader_fn is not None and bn_batches > 0
        if recalibrate:
            self._supernet_bn = bn_statistics(self.supernet)
        self._eval_archs, self._eval_costs, self._eval_bn = [], [], []
        for k in range(self.num_targets):
            arch, cost = self.derive(k)
            self.supernet.set_mode("fixed", arch)
            if recalibrate:
                recalibrate_bn(self.supernet, loader_fn(bn_batches), bn_batches)
            self._eval_archs.append(arch)
            self._eval_costs.append(cost)
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
        if self.num_targets > 1:  # the front's mean
            self.log("val/acc", torch.stack(accs).mean(), prog_bar=True, sync_dist=True)
        for k, acc in enumerate(accs):
            sfx, cost = self.target_suffix(k), self._eval_costs[k]
            self.log(f"val/acc{sfx}", acc, prog_bar=self.num_targets == 1, sync_dist=True)
            self.log(
                f"cost/derived_latency_ms{sfx}",
                cost["latency_ms"],
                prog_bar=self.num_targets == 1,
                sync_dist=True,
            )
            self.log(f"cost/derived_energy_mj{sfx}", cost["energy_mj"], sync_dist=True)

    def on_test_epoch_start(self) -> None:
        self._prepare_derived(self._bn_loader(), self.test_bn_batches)
        for m in self.test_accs:
            m.reset()

    def test_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        for k, logits in self._eval_forward(x):
            self.test_accs[k].update(logits, y)

    def on_test_epoch_end(self) -> None:
        self._restore_supernet_bn()
        for k, m in enumerate(self.test_accs):
            self.log(f"test/acc{self.target_suffix(k)}", m.compute(), sync_dist=True)

    def configure_callbacks(self) -> list[pl.Callback]:
        """The search's history (one row per epoch of what it logs), kept by every trainer.

        The same one each time: Lightning asks again at ``test`` and replaces the trainer's.
        """
        if self._history is None:
            self._history = History(train=HISTORY_TRAIN, val=HISTORY_VAL)
        return [self._history]

    # ------------------------------------------------------------------------------ checkpoints
    checkpoint_key = "dnas_search"

    def checkpoint_identity(self) -> dict[str, Any]:
        return {
            "space": self.space.name,
            "space_fingerprint": self.space.fingerprint(),
            "targets": [dict(t.active()) for t in self.front],
            "searched_fingerprint": self.search_space.fingerprint(),
        }

    def check_checkpoint_identity(self, state: dict[str, Any]) -> None:
        check_checkpoint_state(state, self.space, self.front)
        searched = state.get("searched_fingerprint", self.space.fingerprint())
        if searched != self.search_space.fingerprint():
            raise CheckpointError(
                "the checkpoint searched other bit choices than this run "
                f"(search.bit_levels={self.bit_levels!r}); resume with the setting it was "
                "written with"
            )


def check_search_settings(
    weight_paths: str,
    warmup_epochs: int,
    arch_every: int,
    tau0: float,
    tau_min: float,
    bn_batches: int,
    test_bn_batches: int | None,
) -> None:
    """Refuse a search setting outside its range, naming it (every search module's check)."""
    if weight_paths not in WEIGHT_PATHS:
        raise DnasError(f"search.weight_paths={weight_paths!r} is not one of {list(WEIGHT_PATHS)}")
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise DnasError(f"warmup_epochs must be a whole number >= 0, got {warmup_epochs!r}")
    if isinstance(arch_every, bool) or not isinstance(arch_every, int) or arch_every < 1:
        raise DnasError(f"arch_every must be an integer >= 1, got {arch_every!r}")
    if not 0 < tau_min <= tau0:
        raise DnasError(f"need 0 < tau_min <= tau0, got tau0={tau0}, tau_min={tau_min}")
    for name, n in (
        ("bn_batches (dnas-search: search.bn_batches)", bn_batches),
        ("test_bn_batches (dnas-search: final.bn_batches)", test_bn_batches),
    ):
        if n is not None and n < 0:
            raise DnasError(f"{name} must be >= 0, got {n}")


def check_schedule(
    weight_optimizer: OptimizerCallable, weight_scheduler: LRSchedulerCallable | None
) -> None:
    """The weight optimiser and its schedule built on a dummy parameter and stepped a few times,
    so that a bad setting (``T_max=0``, ``lr=-1``) is refused before any work, not an epoch in.

    Raises:
        DnasError: naming the setting.
    """
    import warnings

    try:
        opt = weight_optimizer([nn.Parameter(torch.zeros(1))])
    except Exception as e:
        raise DnasError(f"weight_optimizer: {' '.join(str(e).split())}") from None
    if weight_scheduler is None:
        return
    t_max = getattr(weight_scheduler, "keywords", {}).get("T_max")
    if t_max is not None and (isinstance(t_max, bool) or not isinstance(t_max, int) or t_max < 1):
        raise DnasError(
            f"weight_scheduler: T_max must be a whole number of epochs >= 1, got {t_max!r}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sched = weight_scheduler(opt)
            for _ in range(3):
                opt.step()
                sched.step()
    except Exception as e:
        raise DnasError(
            f"weight_scheduler: {' '.join(str(e).split()) or type(e).__name__}"
        ) from None


CHECKPOINT_KEY = SearchModule.checkpoint_key

# What a search's history keeps of what it logs (a front's names carry _t<k>): history key by name
HISTORY_TRAIN = {
    "arch/tau": "tau",
    "cost/expected_latency_ms": "expected_latency_ms",
    "cost/expected_energy_mj": "expected_energy_mj",
    "arch/entropy": "entropy",
}
HISTORY_VAL = {
    "val/acc": "val_acc",
    "cost/derived_latency_ms": "derived_latency_ms",
    "cost/derived_energy_mj": "derived_energy_mj",
}


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
    check_checkpoint_targets(state, front)


def check_checkpoint_targets(state: dict[str, Any], front: Sequence[Any]) -> None:
    """Refuse a checkpoint that searched other targets than ``front`` (any targets with
    ``active()``: a space's or a network's), naming both."""
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
