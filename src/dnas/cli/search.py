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
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from dnas.cli.common import handle_version, main_exit, run_command

OBJECTIVES = ("test_acc", "val_acc")  # what run() may return: metrics of the derived network


def run(cfg: DictConfig, output_dir: str | Path | None = None) -> float:
    """Run one search from a composed config; returns its objective (what a sweeper optimizes).

    The objective is ``cfg.objective`` of the derived network: ``test_acc`` (default) or
    ``val_acc`` (its accuracy on the validation split at the last epoch, for tuning without
    looking at the test set); the mean over the targets of a front.
    """
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import RichProgressBar
    from rich.console import Console

    from dnas.checkpoint import (
        CheckpointError,
        atomic_checkpoint_io,
        checkpoint_callback,
        read_checkpoint,
    )
    from dnas.cli.common import (
        check_data,
        check_epochs,
        fit_classes_to_data,
        interrupted,
        resolved_config,
        set_threads,
        silence_lightning,
        write_run_record,
    )
    from dnas.cli.common import output_dir as make_output_dir
    from dnas.cost.hardware import BitFusionConfig
    from dnas.cost.table import load_or_build
    from dnas.cost.targets import BudgetError
    from dnas.derive.budget import cheapest_state
    from dnas.errors import DnasError, NonFiniteLossError
    from dnas.search.losses import BudgetLoss
    from dnas.search.module import CHECKPOINT_KEY, SearchModule
    from dnas.space import SearchSpace
    from dnas.train.load import SPACE_FILE, save_space

    silence_lightning()
    console = Console(stderr=True)
    objective = cfg.get("objective", "test_acc")
    if objective not in OBJECTIVES:
        raise DnasError(f"objective={objective!r} is not one of {OBJECTIVES}")
    out = make_output_dir(output_dir)
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
    console.print(
        f"cost table: {table_path} ({'built' if built else 'cached'}, "
        f"{table.num_entries:,} entries)"
    )
    extremes = table.extremes(space)
    front = _resolve_front(cfg, extremes)
    for targets in front:
        if len(targets.active()) > 1:
            s = cheapest_state(space, table, {m: 1 / t for m, t in targets.active().items()})
            lat, en = table.arch_cost(space, s.to_arch(space))
            if not targets.fits({"latency_ms": lat, "energy_mj": en}):
                raise BudgetError(
                    f"no architecture of {space.name!r} meets {targets.describe()} "
                    f"together (closest: {lat:.4g} ms, {en:.4g} mJ)"
                )
    console.print(
        f"budget: {'; '.join(t.describe() for t in front)}  (space spans "
        f"{extremes['min_latency_ms']:.4g}-{extremes['max_latency_ms']:.4g} ms, "
        f"{extremes['min_energy_mj']:.4g}-{extremes['max_energy_mj']:.4g} mJ)"
    )

    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path:
        from dnas.search.module import check_checkpoint_state

        state = read_checkpoint(ckpt_path).get(CHECKPOINT_KEY)
        if state is None:
            raise CheckpointError(f"ckpt_path={ckpt_path} was not written by dnas-search")
        check_checkpoint_state(state, space, front)

    loss_cfg = OmegaConf.to_container(cfg.loss, resolve=True)
    budgets = [BudgetLoss(targets=t, **loss_cfg) for t in front]
    module = SearchModule(
        space,
        table,
        front if len(front) > 1 else front[0],
        budgets if len(front) > 1 else budgets[0],
        weight_optimizer=instantiate(cfg.optimizer.weights),
        arch_optimizer=instantiate(cfg.optimizer.arch),
        weight_scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        **OmegaConf.to_container(cfg.search, resolve=True),
    )
    logger = instantiate(cfg.logger, save_dir=str(out)) if cfg.get("logger") else False
    callbacks: list = [RichProgressBar()]
    if cfg.trainer.get("enable_checkpointing", True):
        callbacks.append(checkpoint_callback(out))
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        logger=logger,
        callbacks=callbacks,
        plugins=[atomic_checkpoint_io()],
        default_root_dir=str(out),
    )
    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path or None)
        module.bn_batches = int(cfg.final.bn_batches)
        test = trainer.test(module, datamodule=data, verbose=False)
    except (SystemExit, NonFiniteLossError) as e:  # Lightning's answer to SIGTERM and Ctrl-C
        raise interrupted(e, out, "the search") from None
    results = []
    for k, targets in enumerate(front):
        sfx = f"_t{k}" if len(front) > 1 else ""
        test_acc = float(test[0][f"test/acc{sfx}"]) if test else float("nan")
        history = module.history_for(k)
        val_acc = history[-1].get("val_acc", float("nan")) if history else float("nan")
        arch = module.derived_front[k].with_metrics(test_acc=test_acc, val_acc=val_acc)
        arch = arch.priced_by(table.header.content_hash)
        results.append((targets, arch, module.derived_front_cost[k], history, test_acc))
    if trainer.is_global_zero:
        record = {
            "table_hash": table.header.content_hash,
            "torch_threads": threads,
            "config": resolved_config(cfg),
        }
        if ckpt_path:
            record["resumed_from"] = str(ckpt_path)
        if len(front) == 1:
            targets, arch, _, history, _ = results[0]
            _write_target(out, arch, module.distribution_state(0), space, history, targets, record)
        else:
            rows = []
            for k, (targets, arch, cost, history, test_acc) in enumerate(results):
                sub = out / "front" / front_label(k, targets)
                rec = {**record, "front_index": k, "front_size": len(front)}
                _write_target(sub, arch, module.distribution_state(k), space, history, targets, rec)
                rows.append(
                    {
                        "index": k,
                        "dir": str(sub.relative_to(out)),
                        "target": targets.describe(),
                        **cost,
                        "test_acc": test_acc,
                    }
                )
            torch.save(module.distribution_state(0), out / "supernet.pt")
            save_space(space, out / SPACE_FILE)
            write_run_record(out, "dnas", front=rows, **record)
            _write_front_csv(out / "front.csv", rows)
            (out / "history.json").write_text(json.dumps(module.history, indent=1))
        if logger and hasattr(logger, "log_dir"):
            csv_file = Path(logger.log_dir) / "metrics.csv"
            if csv_file.is_file() and csv_file.parent != out:
                (out / "metrics.csv").write_bytes(csv_file.read_bytes())
    for targets, _, cost, _, test_acc in results:
        console.print(
            f"derived: {cost['latency_ms']:.4f} ms, {cost['energy_mj']:.4f} mJ "
            f"(budget {targets.describe()}); test accuracy {100 * test_acc:.2f}% -> {out}"
        )
    return sum(arch.metrics[objective] for _, arch, *_ in results) / len(results)


def _resolve_front(cfg: DictConfig, extremes) -> list:
    """The budgets to search: ``front`` (a list of target mappings) if set, else ``target``."""
    from dnas.cost.targets import BudgetError, resolve_targets

    spec = cfg.get("front")
    if spec is None:
        return [resolve_targets(OmegaConf.to_container(cfg.target, resolve=True), extremes)]
    spec = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec
    if not isinstance(spec, list) or not spec or not all(isinstance(t, dict) for t in spec):
        raise BudgetError(
            "front must be a non-empty list of targets, e.g. "
            "'front=[{latency_frac:0.15},{latency_frac:0.3},{energy_frac:0.3}]'"
        )
    front = [resolve_targets(t, extremes) for t in spec]
    for i, t in enumerate(front):
        if not t.active():
            raise BudgetError(
                f"front[{i}] sets no budget; give latency_ms/_frac or energy_mj/_frac"
            )
    return front


def front_label(k: int, targets) -> str:
    """``<k>_latency_ms0.2661`` (the directory of a front's k-th target)."""
    return f"{k}_" + "_".join(f"{m}{t:.4g}" for m, t in targets.active().items())


def _write_target(out: Path, arch, state, space, history, targets, record: dict) -> None:
    """What a one-target search leaves in its directory."""
    import torch

    from dnas.cli.common import write_run_record
    from dnas.search.plot import plot_search
    from dnas.train.load import SPACE_FILE, save_space

    out.mkdir(parents=True, exist_ok=True)
    arch.save(out / "arch.yaml")
    torch.save(state, out / "supernet.pt")
    save_space(space, out / SPACE_FILE)
    write_run_record(out, "dnas", **record)
    (out / "history.json").write_text(json.dumps(history, indent=1))
    plot_search(history, targets, out / "search.png")


def _write_front_csv(path: Path, rows: list[dict]) -> None:
    import csv

    from dnas.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@hydra.main(config_path="../conf", config_name="search", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    return run_command("dnas-search", run, cfg)


def main() -> None:
    handle_version("dnas-search")
    _hydra_main()
    main_exit("dnas-search")


if __name__ == "__main__":
    main()
