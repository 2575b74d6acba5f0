"""``dnas-search``: the differentiable search, end to end (Hydra entry point).

Checks everything that can be checked (configs, data files, the cost table, the budget) before any
training starts, then searches, derives the architecture within budget, evaluates it inside the
supernet after re-estimating batch-norm statistics, and writes to the run directory:
``arch.yaml`` (every choice, exact latency_ms and energy_mj, the target, accuracies),
``metrics.csv``, ``supernet.pt``, ``history.json`` and ``search.png``.

With ``front=[...]`` (several budgets searched together on shared weights), each target gets its own
directory ``front/<k>_<target>/`` holding what a one-target run holds (``arch.yaml``,
``supernet.pt`` with that target's distribution, ``space.yaml``, ``run.json``, ``history.json``,
``search.png``), so ``dnas-train arch=RUN/front/<k>_<target>`` finetunes it; ``front.csv`` lists
them all.

The files are written by ``dnas.cli.outputs.SearchOutputs``, the callback ``dnas-fit`` uses too.
More callbacks: ``+callbacks.NAME._target_=package.Class +callbacks.NAME.arg=value``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from dnas.cli.common import hydra_entry, run_command

OBJECTIVES = ("test_acc", "val_acc")  # what run() may return: metrics of the derived network

if TYPE_CHECKING:
    from dnas.search.module import SearchModule


def run(cfg: DictConfig, output_dir: str | Path | None = None) -> float:
    """Run one search from a composed config; returns its objective (what a sweeper optimizes).

    The objective is ``cfg.objective`` of the derived network: ``test_acc`` (default) or
    ``val_acc`` (its accuracy on the validation split at the last epoch, for tuning without
    looking at the test set); the mean over the targets of a front.
    """
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import RichProgressBar
    from pytorch_lightning.utilities import rank_zero_only
    from rich.console import Console

    from dnas.checkpoint import (
        CheckpointError,
        atomic_checkpoint_io,
        checkpoint_callback,
        read_checkpoint,
    )
    from dnas.cli.common import (
        check_config,
        check_data,
        check_epochs,
        describe_budget,
        describe_table,
        fit_classes_to_data,
        interrupted,
        resolved_config,
        set_threads,
        silence_lightning,
    )
    from dnas.cli.common import output_dir as make_output_dir
    from dnas.cli.outputs import SearchOutputs
    from dnas.cost.hardware import BitFusionConfig
    from dnas.cost.table import load_or_build
    from dnas.errors import DnasError, NonFiniteLossError
    from dnas.search.module import CHECKPOINT_KEY, check_checkpoint_state
    from dnas.space import SearchSpace

    silence_lightning()
    check_config(cfg)
    console = Console(stderr=True, quiet=rank_zero_only.rank != 0)  # DDP: rank 0 speaks
    objective = cfg.get("objective", "test_acc")
    if objective not in OBJECTIVES:
        raise DnasError(f"objective={objective!r} is not one of {OBJECTIVES}")
    out = make_output_dir(output_dir, cfg)
    pl.seed_everything(int(cfg.seed), workers=True)
    threads = set_threads(cfg.get("threads"))

    # Everything that can fail is checked before training starts.
    check_epochs(cfg.trainer.get("max_epochs"), cfg.search.warmup_epochs)
    hw = BitFusionConfig.from_dict(OmegaConf.to_container(cfg.hardware, resolve=True))
    data = instantiate(cfg.data)
    ckpt_path = cfg.get("ckpt_path")
    if cfg.get("network") is not None:
        module = graph_search_module(cfg, hw, data)
        console.print(describe_graph_budget(module))
        if ckpt_path:
            state = read_checkpoint(ckpt_path).get(module.checkpoint_key)
            if state is None:
                raise CheckpointError(
                    f"ckpt_path={ckpt_path} was not written by dnas-search network=..."
                )
            module.check_checkpoint_identity(state)
    else:
        fit_classes_to_data(cfg, data, console.print)
        space = SearchSpace.from_dict(OmegaConf.to_container(cfg.space, resolve=True))
        space.validate_bits(hw.pmax_bits)
        check_data(space, data)
        table, table_path, built = load_or_build(space, hw, cfg.table.path, cfg.table.backend)
        console.print(describe_table(table, table_path, built))
        module = search_module(cfg, space, hw, table)
        console.print(describe_budget(module))
        if ckpt_path:
            state = read_checkpoint(ckpt_path).get(CHECKPOINT_KEY)
            if state is None:
                raise CheckpointError(f"ckpt_path={ckpt_path} was not written by dnas-search")
            check_checkpoint_state(state, space, module.front)

    logger = instantiate(cfg.logger, save_dir=str(out)) if cfg.get("logger") else False
    outputs = SearchOutputs(str(out))
    outputs.config = resolved_config(cfg)
    outputs.record = {"torch_threads": threads}
    if ckpt_path:
        outputs.record["resumed_from"] = str(ckpt_path)
    callbacks = [RichProgressBar(), outputs]
    if cfg.trainer.get("enable_checkpointing", True):
        callbacks.append(checkpoint_callback(out))
    callbacks += [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        logger=logger,
        callbacks=callbacks,
        plugins=[atomic_checkpoint_io()],
        default_root_dir=str(out),
    )
    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path or None)
        trainer.test(module, datamodule=data, verbose=False)
    except (SystemExit, NonFiniteLossError) as e:  # Lightning's answer to SIGTERM and Ctrl-C
        raise interrupted(e, out, "the search") from None

    for result in outputs.results:  # written by the callback, with the test accuracies
        cost = result.arch.metrics
        more = (
            f", {cost['bitops'] / 1e6:.4g} M BitOps, {cost['size_kib']:.4g} KiB"
            if "bitops" in cost
            else ""
        )
        console.print(
            f"derived: {cost['latency_ms']:.4f} ms, {cost['energy_mj']:.4f} mJ{more} "
            f"(budget {result.targets.describe()}); test accuracy {100 * result.test_acc:.2f}% "
            f"-> {result.dir}"
        )
    values = [getattr(r, objective) for r in outputs.results]
    return sum(values) / len(values) if values else float("nan")


def search_module(cfg: DictConfig, space, hardware, table) -> SearchModule:
    """The ``SearchModule`` a composed config describes, on an already loaded space, hardware
    and cost table."""
    from functools import partial

    from hydra.utils import instantiate

    from dnas.search.losses import BudgetLoss
    from dnas.search.module import SearchModule

    target, front = _target_specs(cfg)
    return SearchModule(
        space=space,
        hardware=hardware,
        table=table,
        target=target,
        front=front,
        budget=partial(BudgetLoss, **OmegaConf.to_container(cfg.loss, resolve=True)),
        weight_optimizer=instantiate(cfg.optimizer.weights),
        arch_optimizer=instantiate(cfg.optimizer.arch),
        weight_scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        test_bn_batches=int(cfg.final.bn_batches),
        **OmegaConf.to_container(cfg.search, resolve=True),
    )


GRAPH_ONLY_TARGETS = ("bitops", "bitops_frac", "size_kib", "size_frac")


def _target_specs(cfg: DictConfig, spec_type: type | None = None) -> tuple[Any, list | None]:
    """``target`` and ``front`` (a list of target mappings, or null) as typed specs
    (``TargetSpec``, or ``spec_type``: ``GraphTargetSpec`` for network=)."""
    from dnas.cost.targets import BudgetError, TargetSpec

    if spec_type is None:
        spec_type = TargetSpec
        given = dict(OmegaConf.to_container(cfg.target, resolve=True))
        fronts = cfg.get("front")
        if fronts is not None and OmegaConf.is_config(fronts):
            for t in OmegaConf.to_container(fronts, resolve=True):
                given.update(t if isinstance(t, dict) else {})
        graph_only = [k for k in GRAPH_ONLY_TARGETS if given.get(k) is not None]
        if graph_only:
            raise BudgetError(
                f"target.{graph_only[0]} bounds a network you bring (network=resnet20, or "
                "+network._target_=your.Net); the MobileNetV2 spaces take latency and energy "
                "budgets"
            )
    target = spec_type.from_dict(
        {
            k: v
            for k, v in OmegaConf.to_container(cfg.target, resolve=True).items()
            if spec_type is not TargetSpec or k not in GRAPH_ONLY_TARGETS
        }
    )
    spec = cfg.get("front")
    if spec is None:
        return target, None
    spec = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec
    if not isinstance(spec, list) or not spec or not all(isinstance(t, dict) for t in spec):
        raise BudgetError(
            "front must be a non-empty list of targets, e.g. "
            "'front=[{latency_frac:0.15},{latency_frac:0.3},{energy_frac:0.3}]'"
        )
    return target, [spec_type.from_dict(t) for t in spec]


def graph_search_module(cfg: DictConfig, hardware, data) -> Any:
    """The ``GraphSearchModule`` of ``network=``: the network built from ``cfg.network`` (its
    null ``in_channels`` and ``num_classes`` taken from the data), choices from ``cfg.graph``."""
    from functools import partial

    from hydra.utils import instantiate

    from dnas.graph.search import GraphSearchModule, GraphTargetSpec
    from dnas.search.losses import BudgetLoss

    shape, network = instantiate_network(OmegaConf.to_container(cfg.network, resolve=True), data)
    graph = graph_options(OmegaConf.to_container(cfg.graph, resolve=True))
    target, front = _target_specs(cfg, GraphTargetSpec)
    search = OmegaConf.to_container(cfg.search, resolve=True)
    common = ("warmup_epochs", "tau0", "tau_min", "hard", "bn_batches", "arch_every")
    return GraphSearchModule(
        network=network,
        input_shape=shape,
        hardware=hardware,
        table_backend=cfg.table.backend,
        target=target,
        front=front,
        budget=partial(BudgetLoss, **OmegaConf.to_container(cfg.loss, resolve=True)),
        weight_optimizer=instantiate(cfg.optimizer.weights),
        arch_optimizer=instantiate(cfg.optimizer.arch),
        weight_scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        test_bn_batches=int(cfg.final.bn_batches),
        weight_paths=search.get("weight_paths", "sampled"),
        # the space search's default 'budget' (spend the budget) is the graph's 'fill'
        derive={"budget": "fill"}.get(search.get("derive", "fill"), search.get("derive")),
        **{k: search[k] for k in common if k in search},
        **graph,
    )


def instantiate_network(spec: dict[str, Any], data) -> tuple[tuple[int, ...], Any]:
    """``(input shape, network)``: the data's ``(C, H, W)`` and the network a ``network:``
    config describes, its null ``in_channels`` and ``num_classes`` taken from the data.

    Raises:
        DnasError: data without an image shape, or a network that cannot be built (one line).
    """
    from hydra.utils import instantiate

    from dnas.errors import DnasError

    shape = tuple(getattr(data, "input_shape", ()))
    if len(shape) != 3:
        raise DnasError(f"data {type(data).__name__} gives no (C, H, W) input shape for network=")
    spec = dict(spec)
    if spec.get("in_channels", 0) is None:
        spec["in_channels"] = shape[0]
    if spec.get("num_classes", 0) is None:
        spec["num_classes"] = int(data.num_classes)
    try:
        network = instantiate(spec)
    except Exception as e:
        cause = e.__cause__ if e.__cause__ is not None else e
        raise DnasError(f"network: {' '.join(str(cause).split())}") from None
    return shape, network


def graph_options(graph: dict[str, Any]) -> dict[str, Any]:
    """The ``graph:`` config as ``dnas.convert`` options (kernel keys as integers)."""
    from dnas.errors import DnasError

    graph = dict(graph)
    allowed = ("w_bits", "a_bits", "width_fractions", "kernels", "skips", "layer_bits")
    unknown = sorted(set(graph) - set(allowed))
    if unknown:
        raise DnasError(f"graph.{unknown[0]} is not a choice setting; allowed: {list(allowed)}")
    for key in ("w_bits", "a_bits", "width_fractions"):
        if not isinstance(graph.get(key), list):
            raise DnasError(f"graph.{key} must be a list, e.g. [2, 4, 8], got {graph.get(key)!r}")
    kernels = graph.get("kernels")
    if kernels is not None:
        try:
            graph["kernels"] = {int(k): tuple(int(v) for v in vs) for k, vs in kernels.items()}
        except (AttributeError, TypeError, ValueError):
            raise DnasError(
                "graph.kernels must map a kernel size to its choices, e.g. '{3: [3, 5]}', "
                f"got {kernels!r}"
            ) from None
    layer_bits = graph.get("layer_bits")
    if layer_bits is not None:
        shape_ok = isinstance(layer_bits, dict) and all(
            isinstance(v, list) and len(v) == 2 and all(isinstance(b, list) for b in v)
            for v in layer_bits.values()
        )
        if not shape_ok:
            raise DnasError(
                "graph.layer_bits must map layer names to [w_bits list, a_bits list], e.g. "
                f"'{{stem.0: [[8], [8]]}}', got {layer_bits!r}"
            )
    return graph


def describe_graph_budget(module) -> str:
    """``network ResNetCifar: 22 layers, ...; budget: bitops <= ...  (spans ...)``."""
    graph = module.graph
    searchable = sum(not g.is_fixed for g in graph.groups)
    spans = ", ".join(f"{m} {lo:.4g}-{hi:.4g}" for m, (lo, hi) in module.extremes.items())
    return (
        f"network {graph.name}: {len(graph.layers)} layers, {searchable} channel groups with "
        f"width choices, {len(graph.skips)} skippable branches\n"
        f"budget: {'; '.join(t.describe() for t in module.front)}  (spans {spans})"
    )


@hydra.main(config_path="../conf", config_name="search", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    return run_command("dnas-search", run, cfg)


def main() -> None:
    hydra_entry("dnas-search", _hydra_main)


if __name__ == "__main__":
    main()
