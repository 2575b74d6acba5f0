"""What a search leaves in its run directory, written by one callback that both CLIs install.

``dnas-search`` (Hydra) and ``dnas-fit`` (LightningCLI) add :class:`SearchOutputs` to their
trainer, so both write the same files, and only the main process writes them.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from dnas.atomic import atomic_path
from dnas.cli.common import write_run_record
from dnas.cost.targets import Targets
from dnas.history import history_of
from dnas.search.module import SearchModule
from dnas.search.plot import plot_search
from dnas.train.load import SPACE_FILE, save_space


@dataclass(frozen=True)
class TargetResult:
    """What a search found for one target: the derived architecture, with its exact cost, the
    target and its accuracies in ``arch.metrics``, and where its files are."""

    arch: Any  # dnas.space.Architecture
    targets: Targets
    dir: Path

    @property
    def val_acc(self) -> float:
        return float(self.arch.metrics.get("val_acc", math.nan))

    @property
    def test_acc(self) -> float:
        return float(self.arch.metrics.get("test_acc", math.nan))


class SearchOutputs(pl.Callback):
    """Writes a search's results at the end of fit, and again with test accuracies after a test.

    One target: ``arch.yaml`` (every choice, its exact ``latency_ms`` and ``energy_mj``, the
    target, ``val_acc`` and, after a test, ``test_acc``), ``supernet.pt`` (weights, this
    distribution, the supernet's own batch-norm statistics), ``space.yaml``, ``run.json``,
    ``history.json`` and ``search.png``. A front: the same in ``front/<k>_<target>/`` per target,
    and at the top ``supernet.pt`` (distribution 0), ``space.yaml``, ``run.json`` listing the
    members, ``front.csv`` and ``history.json``. Only the main process writes.

    Args:
        dirpath: the run directory; None: the trainer's log directory (``trainer.log_dir``).

    Attributes:
        config: the run's resolved configuration, recorded in ``run.json`` (set by the CLI that
            builds the trainer).
        record: more fields for ``run.json`` (e.g. ``torch_threads``, ``resumed_from``).
        results: one :class:`TargetResult` per target, from the last write (after a test: with
            test accuracies); empty before, and on processes other than the main one.
    """

    def __init__(self, dirpath: str | None = None) -> None:
        super().__init__()
        self.dirpath = dirpath
        self.config: dict[str, Any] | None = None
        self.record: dict[str, Any] = {}
        self.results: list[TargetResult] = []

    def run_dir(self, trainer: pl.Trainer) -> Path:
        """Where the files go (call it on every process: under DDP, ``trainer.log_dir`` is a
        broadcast from rank 0)."""
        if self.dirpath is not None:
            return Path(self.dirpath)
        return Path(trainer.log_dir or trainer.default_root_dir)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.write(trainer, _search_module(pl_module), test_accs=None)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        module = _search_module(pl_module)
        accs = [
            float(trainer.callback_metrics.get(f"test/acc{module.target_suffix(k)}", math.nan))
            for k in range(module.num_targets)
        ]
        self.write(trainer, module, test_accs=accs)

    def write(
        self, trainer: pl.Trainer, module: SearchModule, test_accs: list[float] | None
    ) -> Path | None:
        """Write every file (main process only); returns the run directory there, else None.

        Args:
            trainer: the trainer that ran the search.
            module: the search.
            test_accs: each target's test accuracy, or None before any test.
        """
        out = self.run_dir(trainer)  # on every process: trainer.log_dir is a collective call
        if not trainer.is_global_zero:
            return None
        from dnas.graph.search import GraphSearchModule

        if isinstance(module, GraphSearchModule):
            self.results = write_graph_search(
                out, trainer, module, test_accs, {**self.record, "config": self.config}
            )
            _copy_metrics_csv(trainer, out)
            return out
        record = {
            "table_hash": module.table.header.content_hash,
            **self.record,
            "config": self.config,
        }
        space, front, history = module.space, module.front, history_of(trainer)
        results = []
        if len(front) == 1:
            rows = history.for_target(0, 1)
            arch = _arch_with_accuracies(module, 0, rows, test_accs)
            state = module.distribution_state(0)
            write_target(out, arch, state, space, rows, front[0], record)
            results.append(TargetResult(arch, front[0], out))
        else:
            rows = []
            for k, targets in enumerate(front):
                sub = out / "front" / front_label(k, targets)
                own = history.for_target(k, len(front))
                arch = _arch_with_accuracies(module, k, own, test_accs)
                rec = {**record, "front_index": k, "front_size": len(front)}
                write_target(sub, arch, module.distribution_state(k), space, own, targets, rec)
                results.append(TargetResult(arch, targets, sub))
                row = {
                    "index": k,
                    "dir": str(sub.relative_to(out)),
                    "target": targets.describe(),
                    "latency_ms": arch.metrics["latency_ms"],
                    "energy_mj": arch.metrics["energy_mj"],
                }
                if test_accs is not None:
                    row["test_acc"] = test_accs[k]
                rows.append(row)
            with atomic_path(out / "supernet.pt") as tmp:
                torch.save(module.distribution_state(0), tmp)
            save_space(space, out / SPACE_FILE)
            write_run_record(out, "dnas", front=rows, **record)
            write_front_csv(out / "front.csv", rows)
            (out / "history.json").write_text(json.dumps(history.rows, indent=1))
        _copy_metrics_csv(trainer, out)
        self.results = results
        return out


@dataclass(frozen=True)
class DerivedChoice:
    """A graph search's derived choice with its exact costs, targets and accuracies."""

    choice: Any  # dnas.graph.GraphChoice
    metrics: dict[str, float]


def write_graph_search(
    out: Path,
    trainer: pl.Trainer,
    module: Any,
    test_accs: list[float] | None,
    record: dict[str, Any],
) -> list[TargetResult]:
    """What a graph search (``GraphSearchModule``) leaves: per target ``arch.yaml`` (the choice,
    keyed by layer and group names, with its exact costs, the target and accuracies),
    ``supernet.pt``, ``run.json``, ``history.json`` and ``search.png``; a front in
    ``front/<k>_<target>/`` with ``front.csv`` at the top."""
    from dnas.graph.io import graph_fingerprint, save_choice

    graph = module.graph
    record = {
        "network": graph.name,
        "graph_fingerprint": graph_fingerprint(graph),
        "input_shape": list(graph.input_shape),
        "num_classes": graph.num_classes,
        **record,
    }
    front, history = module.front, history_of(trainer)
    results, rows = [], []
    for k, targets in enumerate(front):
        sub = out if len(front) == 1 else out / "front" / front_label(k, targets)
        own = history.for_target(k, len(front))
        choice, cost = module.derive(k)
        metrics = dict(cost)
        metrics.update({f"target_{m}": t for m, t in targets.active().items()})
        metrics["val_acc"] = own[-1].get("val_acc", math.nan) if own else math.nan
        if test_accs is not None:
            metrics["test_acc"] = test_accs[k]
        sub.mkdir(parents=True, exist_ok=True)
        save_choice(sub / "arch.yaml", graph, choice, metrics)
        with atomic_path(sub / "supernet.pt") as tmp:
            torch.save(module.distribution_state(k), tmp)
        rec = record if len(front) == 1 else {**record, "front_index": k, "front_size": len(front)}
        write_run_record(sub, "dnas_graph", **rec)
        (sub / "history.json").write_text(json.dumps(own, indent=1))
        plot_search(own, targets, sub / "search.png")
        results.append(TargetResult(DerivedChoice(choice, metrics), targets, sub))
        row = {"index": k, "dir": str(sub.relative_to(out)), "target": targets.describe()}
        row.update({m: cost[m] for m in ("latency_ms", "energy_mj", "bitops", "size_kib")})
        if test_accs is not None:
            row["test_acc"] = test_accs[k]
        rows.append(row)
    if len(front) > 1:
        with atomic_path(out / "supernet.pt") as tmp:
            torch.save(module.distribution_state(0), tmp)
        write_run_record(out, "dnas_graph", front=rows, **record)
        write_front_csv(out / "front.csv", rows)
        (out / "history.json").write_text(json.dumps(history.rows, indent=1))
    return results


def _search_module(module: pl.LightningModule) -> SearchModule:
    if not isinstance(module, SearchModule):
        raise TypeError(f"SearchOutputs writes a SearchModule's results, got {type(module)}")
    return module


def _arch_with_accuracies(
    module: SearchModule, k: int, history: list[dict[str, float]], test_accs: list[float] | None
):
    """Target k's derived architecture with its exact cost and accuracies in its metrics."""
    arch, _ = module.derive(k)
    arch = arch.priced_by(module.table.header.content_hash)
    val_acc = history[-1].get("val_acc", math.nan) if history else math.nan
    if test_accs is None:
        return arch.with_metrics(val_acc=val_acc)
    return arch.with_metrics(test_acc=test_accs[k], val_acc=val_acc)


def front_label(k: int, targets: Targets) -> str:
    """``<k>_latency_ms0.2661`` (the directory of a front's k-th target)."""
    return f"{k}_" + "_".join(f"{m}{t:.4g}" for m, t in targets.active().items())


def write_target(
    out: Path,
    arch,
    state: dict[str, torch.Tensor],
    space,
    history: list[dict[str, float]],
    targets: Targets,
    record: dict[str, Any],
) -> None:
    """What a one-target search leaves in its directory."""
    out.mkdir(parents=True, exist_ok=True)
    arch.save(out / "arch.yaml")
    with atomic_path(out / "supernet.pt") as tmp:
        torch.save(state, tmp)
    save_space(space, out / SPACE_FILE)
    write_run_record(out, "dnas", **record)
    (out / "history.json").write_text(json.dumps(history, indent=1))
    plot_search(history, targets, out / "search.png")


def write_front_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _copy_metrics_csv(trainer: pl.Trainer, out: Path) -> None:
    """A CSV logger's ``metrics.csv`` beside the results when it logs elsewhere."""
    logger = trainer.logger
    if getattr(logger, "log_dir", None) is None:  # none, or fast_dev_run's dummy
        return
    logger.save()  # what it holds so far (the test's metrics are logged just before this)
    csv_file = Path(logger.log_dir) / "metrics.csv"
    if csv_file.is_file() and csv_file.parent.resolve() != out.resolve():
        (out / "metrics.csv").write_bytes(csv_file.read_bytes())
