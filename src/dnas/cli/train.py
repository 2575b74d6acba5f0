"""``dnas-train``: finetune the child network of a searched architecture (Hydra entry point).

Checks the architecture, the initial weights, the data and the cost table before any training,
builds the static child (inheriting the search's supernet weights with batch-norm statistics
re-estimated, or from scratch), trains it quantization-aware at its fixed bits, tests it, and
writes to the run directory: ``model.pt`` (a state dict), ``arch.yaml`` (with the exact cost and
the finetuned test accuracy), ``space.yaml``, ``run.json``, ``metrics.csv``, ``history.json`` and
``train.png``. ``dnas.load_child(run_dir)`` rebuilds the trained network from those files.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from dnas.cli.common import hydra_entry, run_command


def resolve_init(init: str, arch_path: Path) -> str:
    """``auto`` → the ``supernet.pt`` beside the architecture if present, else ``scratch``."""
    from dnas.train.load import SUPERNET_FILE, TrainError

    if init is not None and not str(init).strip():
        raise TrainError("init= is empty; give auto, scratch or the supernet.pt of a search")
    if init in (None, "auto"):
        candidate = arch_path.parent / SUPERNET_FILE
        return str(candidate) if candidate.is_file() else "scratch"
    if init == "scratch":
        return init
    path = Path(init).expanduser()
    if path.is_dir():
        if not (path / SUPERNET_FILE).is_file():
            raise TrainError(
                f"init={init} is a directory without a {SUPERNET_FILE} (a dnas-search run has one;"
                " a dnas-train run does not): give a search's run or its supernet.pt, or scratch"
            )
        path = path / SUPERNET_FILE
    if not path.is_file():
        raise TrainError(f"init={init}: no such supernet checkpoint (or use init=scratch)")
    return str(path)


def evaluate(model, loader) -> float:
    """Top-1 accuracy of ``model`` (eval mode, no gradients) over ``loader``."""
    import torch

    with torch.no_grad():
        return _accuracy(model, loader)


def _accuracy(model, loader) -> float:
    from dnas.data.loader import IGNORE_LABEL

    was = model.training
    model.eval()
    correct = total = 0
    for x, y in loader:
        counted = y != IGNORE_LABEL  # a padding sample (a distributed loader's filler)
        correct += int(((model(x).argmax(1) == y) & counted).sum())
        total += int(counted.sum())
    model.train(was)
    return correct / max(total, 1)


def run(cfg: DictConfig, output_dir: str | Path | None = None) -> float:
    """Finetune one child from a composed config; returns its test accuracy."""
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate
    from rich.console import Console

    from dnas.atomic import atomic_path
    from dnas.checkpoint import (
        read_checkpoint,
    )
    from dnas.cli.common import (
        check_config,
        check_data,
        check_epochs,
        fit_classes_to_data,
        read_run_record,
        resolved_config,
        silence_lightning,
        write_run_record,
    )
    from dnas.cli.common import (
        output_dir as make_output_dir,
    )
    from dnas.cost.hardware import BitFusionConfig
    from dnas.cost.table import load_or_build
    from dnas.space import SearchSpace
    from dnas.train.load import (
        ARCH_FILE,
        MODEL_FILE,
        SPACE_FILE,
        TrainError,
        init_child,
        load_arch,
        resolve_arch_path,
        save_space,
    )
    from dnas.train.module import ChildModule, check_train_settings
    from dnas.train.plot import plot_training

    silence_lightning()
    check_config(cfg)
    console = Console(stderr=True)
    if OmegaConf.is_missing(cfg, "arch"):
        raise TrainError("no architecture given: dnas-train arch=RUN_DIR (a dnas-search run)")
    pl.seed_everything(int(cfg.seed), workers=True)

    # Everything that can fail is checked before training starts.
    check_epochs(cfg.trainer.get("max_epochs"))
    check_train_settings(
        float(cfg.train.warmup_epochs), float(cfg.train.label_smoothing), int(cfg.train.bn_batches)
    )
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path:
        read_checkpoint(ckpt_path)  # unreadable or foreign: refused here; another arch: on load
    arch_path = resolve_arch_path(cfg.arch)
    if graph_source(read_run_record(arch_path.parent)) is not None:
        return run_graph(cfg, arch_path, read_run_record(arch_path.parent), console, output_dir)
    hw = BitFusionConfig.from_dict(OmegaConf.to_container(cfg.hardware, resolve=True))
    data = instantiate(cfg.data)
    fit_classes_to_data(cfg, data, console.print)
    space = SearchSpace.from_dict(OmegaConf.to_container(cfg.space, resolve=True))
    space.validate_bits(hw.pmax_bits)
    arch = load_arch(arch_path, space)
    init = resolve_init(cfg.init, arch_path)
    check_data(space, data)
    table, _, _ = load_or_build(space, hw, cfg.table.path, cfg.table.backend)
    latency_ms, energy_mj = table.arch_cost(space, arch)
    if init != "scratch":
        from dnas.train.load import load_supernet

        load_supernet(init, space)  # a foreign or damaged checkpoint fails here, not later
    out = make_output_dir(output_dir, cfg)

    data.setup("fit")
    tcfg = cfg.train
    t0 = time.perf_counter()
    child = init_child(
        space,
        arch,
        init,
        data.bn_recalibration_loader(int(tcfg.bn_batches)),
        int(tcfg.bn_batches),
    )
    init_s = time.perf_counter() - t0
    init_acc = None
    if init != "scratch":
        init_acc = evaluate(child, data.test_dataloader())
        console.print(
            f"inherited {init} (BN re-estimated on {tcfg.bn_batches} batches): "
            f"test accuracy before finetuning {100 * init_acc:.2f}%"
        )
    console.print(
        f"child: {arch.depth} of {arch.num_blocks} blocks, {latency_ms:.4f} ms, {energy_mj:.4f} mJ "
        f"on {hw.name}; init {'scratch' if init == 'scratch' else 'supernet'}"
    )
    module = ChildModule(
        child,
        instantiate(cfg.optimizer),
        warmup_epochs=float(tcfg.warmup_epochs),
        label_smoothing=float(tcfg.label_smoothing),
    )
    trainer, logger, test_acc, history, val_acc, train_s = fit_and_test(
        cfg, module, data, out, ckpt_path
    )

    source = read_run_record(arch_path.parent)
    metrics = dict(arch.metrics)
    if "test_acc" in metrics and "supernet_acc" not in metrics and source.get("method") != "train":
        metrics["supernet_acc"] = metrics.pop("test_acc")
    metrics.pop("val_acc", None)
    metrics.update(
        latency_ms=latency_ms,
        energy_mj=energy_mj,
        test_acc=test_acc,
        val_acc=val_acc,
        finetune_epochs=float(trainer.current_epoch),
        finetune_s=train_s,
    )
    if init_acc is not None:
        metrics["inherited_acc"] = init_acc
    result = type(arch)(
        blocks=arch.blocks,
        stem=arch.stem,
        last=arch.last,
        classifier=arch.classifier,
        space=space.name,
        space_fingerprint=space.fingerprint(),
        metrics=metrics,
        table_hash=table.header.content_hash,
    )
    if trainer.is_global_zero:
        with atomic_path(out / MODEL_FILE) as tmp:
            torch.save(module.child.state_dict(), tmp)
        save_space(space, out / SPACE_FILE)
        result.save(out / ARCH_FILE)
        (out / "history.json").write_text(json.dumps(history, indent=1))
        plot_training(
            history,
            out / "train.png",
            title=f"{space.name}: {latency_ms:.4f} ms, {energy_mj:.4f} mJ, "
            f"test {100 * test_acc:.2f}%",
        )
        copy_metrics_csv(logger, out)
        write_run_record(
            out,
            "train",
            source_method=source.get("method", "dnas"),
            source=str(arch_path.parent.resolve()),
            init="scratch" if init == "scratch" else str(Path(init).resolve()),
            table_hash=table.header.content_hash,
            init_s=init_s,
            train_s=train_s,
            config=resolved_config(cfg),
        )
    console.print(
        f"finetuned: test accuracy {100 * test_acc:.2f}% in {train_s / 60:.1f} min "
        f"({latency_ms:.4f} ms, {energy_mj:.4f} mJ) -> {out}"
    )
    return test_acc


def fit_and_test(cfg: DictConfig, module, data, out: Path, ckpt_path) -> tuple:
    """Train ``module`` (a ``ChildModule``) by ``cfg.trainer`` and test it: ``(trainer, logger,
    test_acc, history rows, last val_acc, train seconds)``; an interruption or a NaN loss is one
    line naming the last checkpoint."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import RichProgressBar

    from dnas.checkpoint import atomic_checkpoint_io, best_checkpoint_callback, checkpoint_callback
    from dnas.cli.common import interrupted
    from dnas.errors import NonFiniteLossError
    from dnas.history import history_of

    logger = instantiate(cfg.logger, save_dir=str(out)) if cfg.get("logger") else False
    callbacks: list = [RichProgressBar()]
    if cfg.trainer.get("enable_checkpointing", True):
        callbacks += [checkpoint_callback(out), best_checkpoint_callback(out, "val/acc")]
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        logger=logger,
        callbacks=callbacks,
        plugins=[atomic_checkpoint_io()],
        default_root_dir=str(out),
    )
    t0 = time.perf_counter()
    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path or None)
        train_s = time.perf_counter() - t0
        test = trainer.test(module, datamodule=data, verbose=False)
    except (SystemExit, NonFiniteLossError) as e:  # SIGTERM, Ctrl-C, a NaN loss
        raise interrupted(e, out, "the training") from None
    test_acc = float(test[0]["test/acc"]) if test else float("nan")
    history = history_of(trainer).rows
    val_acc = history[-1].get("val_acc", float("nan")) if history else float("nan")
    return trainer, logger, test_acc, history, val_acc, train_s


def copy_metrics_csv(logger, out: Path) -> None:
    """The CSV logger's ``metrics.csv`` beside the results when it logged elsewhere."""
    if logger and hasattr(logger, "log_dir"):
        csv_file = Path(logger.log_dir) / "metrics.csv"
        if csv_file.is_file() and csv_file.parent != out:
            (out / "metrics.csv").write_bytes(csv_file.read_bytes())


def graph_source(record: dict) -> tuple[dict, dict] | None:
    """See ``dnas.graph.load.graph_record``."""
    from dnas.graph.load import graph_record

    return graph_record(record)


def run_graph(cfg: DictConfig, arch_path: Path, source: dict, console, output_dir) -> float:
    """``dnas-train`` on a converted network's search (``dnas-search network=...``): the network
    rebuilt from the run's config, the choice of its ``arch.yaml``, the child inherited from its
    ``supernet.pt`` (batch norms re-estimated) or from scratch; writes ``model.pt``, ``arch.yaml``
    (the choice with its exact costs and accuracies), ``run.json``, ``metrics.csv``,
    ``history.json`` and ``train.png``."""
    import torch
    from hydra.utils import instantiate

    from dnas.atomic import atomic_path
    from dnas.checkpoint import torch_file_problem
    from dnas.cli.common import output_dir as make_output_dir
    from dnas.cli.common import resolved_config, write_run_record
    from dnas.cli.search import graph_options, instantiate_network
    from dnas.cost.graph import GraphCostTable
    from dnas.cost.hardware import BitFusionConfig
    from dnas.graph.derive import graph_metrics
    from dnas.graph.io import choice_to_dict, graph_fingerprint, load_choice, save_choice
    from dnas.graph.search import graph_supernet
    from dnas.supernet import recalibrate_bn
    from dnas.train.load import ARCH_FILE, MODEL_FILE, TrainError
    from dnas.train.module import ChildModule
    from dnas.train.plot import plot_training

    network_config, graph_config = graph_source(source) or ({}, {})
    if not network_config:
        raise TrainError(f"{arch_path.parent}/run.json names no network to rebuild")
    hw = BitFusionConfig.from_dict(OmegaConf.to_container(cfg.hardware, resolve=True))
    data = instantiate(cfg.data)
    if hasattr(data, "check"):
        data.check()
    shape, network = instantiate_network(network_config, data)
    supernet = graph_supernet(network, shape, **graph_options(graph_config))
    graph = supernet.graph
    choice, _ = load_choice(arch_path, graph)
    init = resolve_init(cfg.init, arch_path)
    if init != "scratch":
        try:
            state = torch.load(init, map_location="cpu", weights_only=True)
        except Exception:
            raise TrainError(f"init={init}: {torch_file_problem(init)}") from None
        try:
            supernet.load_state_dict(state)
        except (RuntimeError, KeyError) as e:
            raise TrainError(
                f"init={init} is not a supernet of this network ({graph.name}): "
                f"{' '.join(str(e).split())[:200]}"
            ) from None
    cost = graph_metrics(graph, GraphCostTable(graph, hw, cfg.table.backend))(choice)
    out = make_output_dir(output_dir, cfg)

    data.setup("fit")
    tcfg = cfg.train
    t0 = time.perf_counter()
    child = supernet.child(choice)
    init_acc = None
    if init != "scratch" and int(tcfg.bn_batches) > 0:
        n = int(tcfg.bn_batches)
        recalibrate_bn(child, data.bn_recalibration_loader(n), n)
        init_acc = evaluate(child, data.test_dataloader())
        console.print(
            f"inherited {init} (BN re-estimated on {n} batches): test accuracy before "
            f"finetuning {100 * init_acc:.2f}%"
        )
    init_s = time.perf_counter() - t0
    console.print(
        f"child of {graph.name}: {len(graph.layers) - len(graph.skipped_layers(choice))} of "
        f"{len(graph.layers)} layers, {cost['latency_ms']:.4f} ms, {cost['energy_mj']:.4f} mJ on "
        f"{hw.name}, {cost['bitops'] / 1e6:.4g} M BitOps, {cost['size_kib']:.4g} KiB; init "
        f"{'scratch' if init == 'scratch' else 'supernet'}"
    )
    fingerprint = graph_fingerprint(graph)
    module = ChildModule(
        child,
        instantiate(cfg.optimizer),
        warmup_epochs=float(tcfg.warmup_epochs),
        label_smoothing=float(tcfg.label_smoothing),
        num_classes=graph.num_classes,
        identity={
            "graph_fingerprint": fingerprint,
            "choice": json.dumps(choice_to_dict(graph, choice), sort_keys=True),
        },
    )
    trainer, logger, test_acc, history, val_acc, train_s = fit_and_test(
        cfg, module, data, out, cfg.get("ckpt_path")
    )
    metrics = dict(cost)
    metrics.update(
        test_acc=test_acc,
        val_acc=val_acc,
        finetune_epochs=float(trainer.current_epoch),
        finetune_s=train_s,
    )
    if init_acc is not None:
        metrics["inherited_acc"] = init_acc
    if trainer.is_global_zero:
        with atomic_path(out / MODEL_FILE) as tmp:
            torch.save(module.child.state_dict(), tmp)
        save_choice(out / ARCH_FILE, graph, choice, metrics)
        (out / "history.json").write_text(json.dumps(history, indent=1))
        plot_training(
            history,
            out / "train.png",
            title=f"{graph.name}: {cost['latency_ms']:.4f} ms, {cost['bitops'] / 1e6:.4g} M "
            f"BitOps, test {100 * test_acc:.2f}%",
        )
        copy_metrics_csv(logger, out)
        write_run_record(
            out,
            "train",
            source_method="dnas_graph",
            source=str(arch_path.parent.resolve()),
            network=graph.name,
            graph_fingerprint=fingerprint,
            input_shape=list(graph.input_shape),
            num_classes=graph.num_classes,
            network_config=network_config,
            graph_config=graph_config,
            init="scratch" if init == "scratch" else str(Path(init).resolve()),
            init_s=init_s,
            train_s=train_s,
            config=resolved_config(cfg),
        )
    console.print(
        f"finetuned: test accuracy {100 * test_acc:.2f}% in {train_s / 60:.1f} min "
        f"({cost['latency_ms']:.4f} ms, {cost['bitops'] / 1e6:.4g} M BitOps) -> {out}"
    )
    return test_acc


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    return run_command("dnas-train", run, cfg)


def main() -> None:
    hydra_entry("dnas-train", _hydra_main)


if __name__ == "__main__":
    main()
