"""Searching a converted network: ``SearchModule``'s schedule and steps over a ``GraphSuperNet``.

The search loop is the MobileNetV2 search's own (``dnas.search.module.SearchModule``: warm-up,
weight and architecture steps on their splits, Gumbel temperature decay, a budget term per
target, a front of targets on shared weights, batch-norm re-estimation and evaluation of the
derived network, checkpoints and resume); only what depends on the network differs:

- the supernet is ``dnas.graph.supernet.GraphSuperNet`` over the user's module, traced;
- the expected cost is the BitFusion latency and energy of ``dnas.cost.graph.GraphCostTable``
  with the BitOps and model size of ``dnas.graph.expected``, all differentiable;
- targets may bound ``latency_ms``, ``energy_mj``, ``bitops`` and ``size_kib`` (absolute, or a
  fraction ``*_frac`` of the way from the smallest choice to the largest), alone or together;
- the derivation is ``dnas.graph.derive.derive_graph``: exact costs, never over a budget.

Example (a notebook; ``dnas.data.SyntheticDataModule`` stands in for real data)::

    from functools import partial
    import pytorch_lightning as pl, torch
    from dnas.graph.search import GraphSearchModule, GraphTargetSpec
    from dnas.networks import resnet20
    from dnas.search.losses import BudgetLoss

    module = GraphSearchModule(
        network=resnet20(in_channels=1), input_shape=(1, 28, 28),
        target=GraphTargetSpec(bitops_frac=0.3, latency_frac=0.5), skips=True,
        weight_optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9),
        arch_optimizer=partial(torch.optim.Adam, lr=0.02),
        budget=partial(BudgetLoss, kind="hinge", lam=2.0))
    pl.Trainer(max_epochs=4).fit(module, datamodule=...)
    choice, cost = module.derive()      # a GraphChoice within budget and its exact cost
    net = module.supernet.child(choice)  # the network of that choice alone
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from dnas.cost.graph import GraphCostTable
from dnas.cost.hardware import BitFusionConfig, load_hardware
from dnas.cost.targets import BudgetError
from dnas.errors import DnasError
from dnas.graph.derive import GRAPH_METRICS, GRAPH_STRATEGIES, derive_graph, graph_metrics
from dnas.graph.expected import expected_bitops, expected_size_bits
from dnas.graph.graph import GraphChoice, LayerGraph
from dnas.graph.io import graph_fingerprint
from dnas.graph.supernet import GraphRelaxed, GraphSuperNet, searchable
from dnas.search.module import (
    BudgetLossCallable,
    LRSchedulerCallable,
    OptimizerCallable,
    SearchModule,
    check_checkpoint_targets,
    check_search_settings,
)

_UNIT = {"latency_ms": "ms", "energy_mj": "mJ", "bitops": "BitOps", "size_kib": "KiB"}
# the key of each metric's fraction of the way from the smallest choice's cost to the largest's
FRACTION_KEYS = {
    "latency_ms": "latency_frac",
    "energy_mj": "energy_frac",
    "bitops": "bitops_frac",
    "size_kib": "size_frac",
}


@dataclass(frozen=True)
class GraphTargets:
    """Upper bounds on the derived network's exact cost; None means unconstrained."""

    latency_ms: float | None = None
    energy_mj: float | None = None
    bitops: float | None = None
    size_kib: float | None = None

    def active(self) -> dict[str, float]:
        return {m: getattr(self, m) for m in GRAPH_METRICS if getattr(self, m) is not None}

    def fits(self, cost: Mapping[str, float], tol: float = 1e-12) -> bool:
        return all(cost[m] <= t * (1 + tol) for m, t in self.active().items())

    def describe(self) -> str:
        return ", ".join(f"{m} <= {t:.4g} {_UNIT[m]}" for m, t in self.active().items()) or "none"


@dataclass(frozen=True)
class GraphTargetSpec:
    """A budget as given in a config: per metric an absolute bound or a fraction ``f`` of the way
    from the smallest choice's cost to the largest's (``smallest + f·(largest − smallest)``), at
    most one of each pair."""

    latency_ms: float | None = None
    latency_frac: float | None = None
    energy_mj: float | None = None
    energy_frac: float | None = None
    bitops: float | None = None
    bitops_frac: float | None = None
    size_kib: float | None = None
    size_frac: float | None = None

    def __post_init__(self) -> None:
        for m, f in FRACTION_KEYS.items():
            if getattr(self, m) is not None and getattr(self, f) is not None:
                raise BudgetError(f"give either target.{m} or target.{f}, not both")
            for key in (m, f):
                v = getattr(self, key)
                if v is not None and (
                    isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                ):
                    raise BudgetError(f"target.{key} must be a number, got {v!r}")

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any] | None) -> GraphTargetSpec:
        spec = {k: v for k, v in (spec or {}).items() if v is not None}
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise BudgetError(f"unknown target key(s) {unknown}; allowed: {sorted(allowed)}")
        return cls(**spec)

    def resolve(self, extremes: Mapping[str, tuple[float, float]]) -> GraphTargets:
        """Absolute targets; a bound below the smallest choice's cost or a fraction outside
        ``(0, 1]`` is a ``BudgetError`` naming what the network can reach."""
        out: dict[str, float] = {}
        for m in GRAPH_METRICS:
            lo, hi = extremes[m]
            frac, value = getattr(self, FRACTION_KEYS[m]), getattr(self, m)
            if frac is not None:
                if not 0 < frac <= 1:
                    raise BudgetError(f"target.{FRACTION_KEYS[m]} must be in (0, 1], got {frac}")
                value = lo + frac * (hi - lo)
            if value is None:
                continue
            if value < lo:
                raise BudgetError(
                    f"target {m} <= {value:.6g} is below the smallest choice's {lo:.6g} "
                    f"(the largest costs {hi:.6g})"
                )
            out[m] = float(value)
        return GraphTargets(**out)


def graph_supernet(network: nn.Module, input_shape: Sequence[int], **options: Any) -> GraphSuperNet:
    """The supernet a graph search builds over ``network`` (``searchable``'s options): traced
    on a fixed random batch, so that signed and unsigned quantizers follow the network's own
    signs, and the same supernet is rebuilt for training the result (``dnas-train``)."""
    example = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    return searchable(network, example, **options)


class GraphExpectedCost(nn.Module):
    """Expected latency and energy (the graph's cost table) and BitOps and size (KiB) of a
    relaxed distribution, 0-dim tensors differentiable in it."""

    def __init__(self, graph: LayerGraph, table: GraphCostTable) -> None:
        super().__init__()
        self.graph, self.table = graph, table

    def forward(self, relaxed: GraphRelaxed) -> dict[str, torch.Tensor]:
        out = dict(self.table.expected(relaxed))
        out["bitops"] = expected_bitops(self.graph, relaxed).double()
        out["size_kib"] = expected_size_bits(self.graph, relaxed).double() / 8192
        return out


class GraphSearchModule(SearchModule):
    """Differentiable search of a converted network's bits, widths, kernels and skips.

    Args:
        network: the user's ``nn.Module`` (copied; it is not changed). It must take
            ``[B, *input_shape]`` and return ``[B, num_classes]``.
        input_shape: one input's shape ``(C, H, W)``.
        weight_optimizer, arch_optimizer, budget, weight_scheduler, warmup_epochs, tau0,
            tau_min, hard, bn_batches, test_bn_batches, arch_every, weight_paths: as for
            ``SearchModule``.
        target: the budget (``GraphTargetSpec`` or a mapping of its keys); None: none.
        front: several budgets searched together (``target`` is then ignored).
        w_bits, a_bits, width_fractions, kernels, skips, leaf_modules, layer_bits: the choices,
            as for ``dnas.convert``.
        hardware: a built-in hardware name, a YAML file of one, or a ``BitFusionConfig``.
        table_backend: backend that prices the layer options (``auto``, ``torch``, ``triton``).
        derive: ``"fill"`` (the default: the most likely choice, lowered until it fits, then
            raised toward the distribution while the budget allows) or ``"argmax"`` (no raising);
            ``dnas.graph.derive.derive_graph``.
    """

    def __init__(
        self,
        *,
        network: nn.Module,
        input_shape: Sequence[int],
        weight_optimizer: OptimizerCallable,
        arch_optimizer: OptimizerCallable,
        budget: BudgetLossCallable,
        target: GraphTargetSpec | Mapping[str, Any] | None = None,
        front: Sequence[GraphTargetSpec | Mapping[str, Any]] | None = None,
        w_bits: Sequence[int] = (2, 4, 8),
        a_bits: Sequence[int] = (2, 4, 8),
        width_fractions: Sequence[float] = (0.5, 0.75, 1.0),
        kernels: Mapping[int, Sequence[int]] | None = None,
        skips: bool = True,
        leaf_modules: Sequence[type[nn.Module]] = (),
        layer_bits: Mapping[str, tuple[Sequence[int], Sequence[int]]] | None = None,
        weight_scheduler: LRSchedulerCallable | None = None,
        hardware: str | BitFusionConfig = "bitfusion",
        table_backend: str = "auto",
        warmup_epochs: int = 1,
        tau0: float = 5.0,
        tau_min: float = 0.5,
        hard: bool = True,
        bn_batches: int = 20,
        test_bn_batches: int | None = None,
        arch_every: int = 2,
        weight_paths: str = "sampled",
        derive: str = "fill",
    ) -> None:
        super(SearchModule, self).__init__()
        if derive not in GRAPH_STRATEGIES:
            raise DnasError(f"derive={derive!r} is not one of {list(GRAPH_STRATEGIES)}")
        self.derive_strategy = derive
        check_search_settings(
            weight_paths, warmup_epochs, arch_every, tau0, tau_min, bn_batches, test_bn_batches
        )
        if not isinstance(network, nn.Module):
            raise DnasError(f"network must be an nn.Module, got {type(network).__name__}")
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise DnasError(f"input_shape must be (C, H, W) of positive sizes, got {shape}")
        hw = hardware if isinstance(hardware, BitFusionConfig) else load_hardware(hardware)
        lists = [("w_bits", w_bits), ("a_bits", a_bits)]
        for name, (wb, ab) in (layer_bits or {}).items():
            lists += [(f"layer_bits.{name} w_bits", wb), (f"layer_bits.{name} a_bits", ab)]
        for what, bits in lists:
            bad = [b for b in bits if not hw.pmin_bits <= b <= hw.pmax_bits]
            if bad:
                raise DnasError(
                    f"{what} {list(bits)}: {bad} outside what hardware {hw.name!r} runs "
                    f"({hw.pmin_bits}..{hw.pmax_bits})"
                )
        supernet = graph_supernet(
            network,
            shape,
            tau=tau0,
            hard=hard,
            w_bits=w_bits,
            a_bits=a_bits,
            width_fractions=width_fractions,
            kernels=kernels,
            skips=skips,
            leaf_modules=leaf_modules,
            layer_bits=layer_bits,
        )
        graph = supernet.graph
        table = GraphCostTable(graph, hw, table_backend)
        self.graph, self.graph_table, self.hardware = graph, table, hw
        self._cost = graph_metrics(graph, table)
        low, high = self._cost(graph.smallest_choice()), self._cost(graph.largest_choice())
        self.extremes = {m: (low[m], high[m]) for m in GRAPH_METRICS}

        def spec(t: Any) -> GraphTargetSpec:
            return t if isinstance(t, GraphTargetSpec) else GraphTargetSpec.from_dict(t)

        if front is not None:
            if not front:
                raise BudgetError("front must be a non-empty list of targets")
            resolved = [spec(t).resolve(self.extremes) for t in front]
            for i, t in enumerate(resolved):
                if not t.active():
                    raise BudgetError(f"front[{i}] sets no budget")
        else:
            resolved = [spec(target).resolve(self.extremes)]
        for t in resolved:  # two bounds together: a choice meeting both must exist
            if len(t.active()) > 1:
                derive_graph(graph, supernet.relaxed(), self._cost, t.active())
        budgets = [budget(t) for t in resolved]
        self.save_hyperparameters(
            {
                "network": graph.name,
                "warmup_epochs": warmup_epochs,
                "tau0": tau0,
                "tau_min": tau_min,
                "hard": hard,
                "budget": budgets[0].kind,
                "targets": [t.active() for t in resolved]
                if len(resolved) > 1
                else resolved[0].active(),
                "arch_every": arch_every,
                "weight_paths": weight_paths,
            }
        )
        self._init_search(
            front=resolved,
            budgets=budgets,
            supernet=supernet,
            expected_cost=GraphExpectedCost(graph, table),
            num_classes=graph.num_classes,
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

    def setup(self, stage: str) -> None:
        """The data's input shape and classes must be the network's."""
        data = getattr(self.trainer, "datamodule", None)
        if data is None:
            return
        shape = tuple(getattr(data, "input_shape", ()))
        if shape not in ((), self.graph.input_shape):
            raise DnasError(
                f"data {type(data).__name__} gives inputs {shape}, network {self.graph.name!r} "
                f"was converted for {self.graph.input_shape}"
            )
        classes = getattr(data, "num_classes", None)
        if classes is not None and int(classes) != self.graph.num_classes:
            raise DnasError(
                f"data {type(data).__name__} has {classes} classes, network "
                f"{self.graph.name!r} returns {self.graph.num_classes}"
            )

    def derive(self, k: int = 0) -> tuple[GraphChoice, dict[str, float]]:
        """Target k's current derived choice (within its budget) and its exact cost."""
        self.use_distribution(k)
        with torch.no_grad():
            choice, cost, _ = derive_graph(
                self.graph,
                self.supernet.relaxed(),
                self._cost,
                self.front[k].active(),
                strategy=self.derive_strategy,
            )
        return choice, cost

    checkpoint_key = "dnas_graph_search"

    def checkpoint_identity(self) -> dict[str, Any]:
        return {
            "network": self.graph.name,
            "graph_fingerprint": graph_fingerprint(self.graph),
            "targets": [dict(t.active()) for t in self.front],
        }

    def check_checkpoint_identity(self, state: dict[str, Any]) -> None:
        from dnas.checkpoint import CheckpointError

        if state.get("graph_fingerprint") != graph_fingerprint(self.graph):
            raise CheckpointError(
                f"the checkpoint searched network {state.get('network')!r} with other choices "
                f"than this run's {self.graph.name!r}; resume with the same network and choices"
            )
        check_checkpoint_targets(state, self.front)
