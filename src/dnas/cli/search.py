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
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, OmegaConf

from dnas.cli.common import hydra_entry, run_command

OBJECTIVES = ("test_acc", "val_acc")  # what run() may return: metrics of the derived network

if TYPE_CHECKING:
    from dnas.cost.targets import TargetSpec
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
    check_epochs(cfg.trainer.get("max_epochs"), int(cfg.search.warmup_epochs))
    hw = BitFusionConfig.from_dict(OmegaConf.to_container(cfg.hardware, resolve=True))
    data = instantiate(cfg.data)
    fit_classes_to_data(cfg, data, console.print)
    space = SearchSpace.from_dict(OmegaConf.to_container(cfg.space, resolve=True))
    space.validate_bits(hw.pmax_bits)
    check_data(space, data)
    table, table_path, built = load_or_build(space, hw, cfg.table.path, cfg.table.backend)
    console.print(describe_table(table, table_path, built))
    module = search_module(cfg, space, hw, table)
    console.print(describe_budget(module))
    ckpt_path = cfg.get("ckpt_path")
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
        console.print(
            f"derived: {cost['latency_ms']:.4f} ms, {cost['energy_mj']:.4f} mJ "
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


def _target_specs(cfg: DictConfig) -> tuple[TargetSpec, list[TargetSpec] | None]:
    """``target`` and ``front`` (a list of target mappings, or null) as typed specs."""
    from dnas.cost.targets import BudgetError, TargetSpec

    target = TargetSpec.from_dict(OmegaConf.to_container(cfg.target, resolve=True))
    spec = cfg.get("front")
    if spec is None:
        return target, None
    spec = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec
    if not isinstance(spec, list) or not spec or not all(isinstance(t, dict) for t in spec):
        raise BudgetError(
            "front must be a non-empty list of targets, e.g. "
            "'front=[{latency_frac:0.15},{latency_frac:0.3},{energy_frac:0.3}]'"
        )
    return target, [TargetSpec.from_dict(t) for t in spec]


@hydra.main(config_path="../conf", config_name="search", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    return run_command("dnas-search", run, cfg)


def main() -> None:
    hydra_entry("dnas-search", _hydra_main)


if __name__ == "__main__":
    main()
