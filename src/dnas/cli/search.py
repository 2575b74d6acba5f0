"""``dnas-search``: the differentiable search, end to end (Hydra entry point).

Checks everything that can be checked (configs, data files, the cost table, the budget) before any
training starts, then searches, derives the architecture within budget, evaluates it inside the
supernet after re-estimating batch-norm statistics, and writes to the run directory:
``arch.yaml`` (every choice, exact latency_ms and energy_mj, the target, accuracies),
``metrics.csv``, ``supernet.pt``, ``history.json`` and ``search.png``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf


def run(cfg: DictConfig, output_dir: str | Path | None = None) -> float:
    """Run one search from a composed config; returns the derived network's test accuracy."""
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import RichProgressBar
    from rich.console import Console

    from dnas.cli.common import (
        check_data,
        resolved_config,
        silence_lightning,
        write_run_record,
    )
    from dnas.cli.common import output_dir as make_output_dir
    from dnas.cost.hardware import BitFusionConfig
    from dnas.cost.table import load_or_build
    from dnas.cost.targets import BudgetError, resolve_targets
    from dnas.derive.budget import cheapest_state
    from dnas.search.losses import BudgetLoss
    from dnas.search.module import SearchModule
    from dnas.search.plot import plot_search
    from dnas.space import SearchSpace
    from dnas.train.load import SPACE_FILE, save_space

    silence_lightning()
    console = Console(stderr=True)
    out = make_output_dir(output_dir)
    pl.seed_everything(int(cfg.seed), workers=True)

    # Everything that can fail is checked before training starts.
    hw = BitFusionConfig.from_dict(OmegaConf.to_container(cfg.hardware, resolve=True))
    space = SearchSpace.from_dict(OmegaConf.to_container(cfg.space, resolve=True))
    space.validate_bits(hw.pmax_bits)
    data = instantiate(cfg.data)
    check_data(space, data)
    table, table_path, built = load_or_build(space, hw, cfg.table.path, cfg.table.backend)
    console.print(
        f"cost table: {table_path} ({'built' if built else 'cached'}, "
        f"{table.num_entries:,} entries)"
    )
    extremes = table.extremes(space)
    targets = resolve_targets(OmegaConf.to_container(cfg.target, resolve=True), extremes)
    if len(targets.active()) > 1:
        s = cheapest_state(space, table, {m: 1 / t for m, t in targets.active().items()})
        lat, en = table.arch_cost(space, s.to_arch(space))
        if not targets.fits({"latency_ms": lat, "energy_mj": en}):
            raise BudgetError(
                f"no architecture of {space.name!r} meets {targets.describe()} "
                f"together (closest: {lat:.4g} ms, {en:.4g} mJ)"
            )
    console.print(
        f"budget: {targets.describe()}  (space spans "
        f"{extremes['min_latency_ms']:.4g}-{extremes['max_latency_ms']:.4g} ms, "
        f"{extremes['min_energy_mj']:.4g}-{extremes['max_energy_mj']:.4g} mJ)"
    )

    loss_cfg = OmegaConf.to_container(cfg.loss, resolve=True)
    budget = BudgetLoss(targets=targets, **loss_cfg)
    module = SearchModule(
        space,
        table,
        targets,
        budget,
        weight_optimizer=instantiate(cfg.optimizer.weights),
        arch_optimizer=instantiate(cfg.optimizer.arch),
        weight_scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        **OmegaConf.to_container(cfg.search, resolve=True),
    )
    logger = instantiate(cfg.logger, save_dir=str(out)) if cfg.get("logger") else False
    trainer: pl.Trainer = instantiate(
        cfg.trainer, logger=logger, callbacks=[RichProgressBar()], default_root_dir=str(out)
    )
    trainer.fit(module, datamodule=data)

    module.bn_batches = int(cfg.final.bn_batches)
    test = trainer.test(module, datamodule=data, verbose=False)
    test_acc = float(test[0]["test/acc"]) if test else float("nan")
    arch, cost = module.derived, module.derived_cost
    val_acc = module.history[-1].get("val_acc", float("nan")) if module.history else float("nan")
    arch = arch.with_metrics(**{"test_acc": test_acc, "val_acc": val_acc})
    if trainer.is_global_zero:
        arch.save(out / "arch.yaml")
        torch.save(module.supernet.state_dict(), out / "supernet.pt")
        save_space(space, out / SPACE_FILE)
        write_run_record(
            out,
            "dnas",
            table_hash=table.header.content_hash,
            config=resolved_config(cfg),
        )
        (out / "history.json").write_text(json.dumps(module.history, indent=1))
        plot_search(module.history, targets, out / "search.png")
        if logger and hasattr(logger, "log_dir"):
            csv_file = Path(logger.log_dir) / "metrics.csv"
            if csv_file.is_file() and csv_file.parent != out:
                (out / "metrics.csv").write_bytes(csv_file.read_bytes())
    console.print(
        f"derived: {cost['latency_ms']:.4f} ms, {cost['energy_mj']:.4f} mJ "
        f"(budget {targets.describe()}); test accuracy {100 * test_acc:.2f}% -> {out}"
    )
    return test_acc


@hydra.main(config_path="../conf", config_name="search", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    from dnas.cost.table import TableError
    from dnas.cost.targets import BudgetError

    try:
        return run(cfg)
    except (BudgetError, TableError, ValueError, FileNotFoundError) as e:
        print(f"dnas-search: error: {e}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
