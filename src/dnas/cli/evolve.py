"""``dnas-evolve``: APQ's evolutionary search, or random search, on the same supernet and cost table
as ``dnas-search`` (Hydra entry point).

1. Supernet: ``supernet=PATH`` reuses a uniformly trained one; otherwise one is trained with
   uniform single-path sampling for ``trainer.max_epochs`` on the same weight split as the search.
2. Fitness: ``direct`` measures a candidate inside the supernet (BN re-estimated) on a fixed subset
   of the architecture split; ``predictor`` trains APQ's MLP on ``predictor.samples`` measured
   random architectures (or ``predictor.data=CSV``) and queries it.
3. Search: ``algorithm=evolution`` (population 100, top 25 parents, 50 mutations, 50 crossovers)
   or ``algorithm=random``, every candidate within the budget by exact table cost; the fittest of
   the final population are re-measured directly and the best is kept.

Writes to the run directory: ``arch.yaml`` (exact cost, target, test accuracy inside the supernet),
``evolution.csv`` and ``evolution.png``, ``supernet.pt``, ``predictor_data.csv`` and
``predictor.pt`` (predictor fitness), ``space.yaml`` and ``run.json`` (method, timings, counts).

Every phase can be resumed (``resume=RUN`` with the settings RUN ran with): the supernet training
from ``RUN/checkpoints/last.ckpt`` (or not at all once ``RUN/supernet.pt`` is written), the
measurements from ``RUN/checkpoints/measured.json`` (only the missing ones are measured), the
search from ``RUN/checkpoints/evolve.json`` (population, history and random state after its last
generation: it continues exactly). SIGTERM or Ctrl-C during the measurements or the search saves
them and exits 143 / 130 naming the ``resume=`` to give.
"""

from __future__ import annotations

import contextlib
import csv
import io
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, OmegaConf

from dnas.cli.common import hydra_entry, run_command

if TYPE_CHECKING:  # the command imports torch and the rest only when it runs
    from rich.progress import Progress

    from dnas.cost.targets import Targets
    from dnas.derive import ArchState
    from dnas.evolve import GenomeSpace, PredictorFitness, SearchResult, SearchState
    from dnas.evolve.search import CostFn, Fitness

METHODS = {
    ("evolution", "predictor"): "evolution_predictor",
    ("evolution", "direct"): "evolution_direct",
    ("random", "predictor"): "random_predictor",
    ("random", "direct"): "random",
}


class Clock:
    """Wall-clock and process CPU time of named phases."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def phase(self, name: str):
        clock = self

        class _Phase:
            def __enter__(self):
                self.t0, self.c0 = time.perf_counter(), time.process_time()

            def __exit__(self, *exc):
                clock.times[f"{name}_s"] = round(time.perf_counter() - self.t0, 2)
                clock.times[f"{name}_cpu_s"] = round(time.process_time() - self.c0, 2)

        return _Phase()


def _write_csv(path: Path, rows: list[dict], header: list[str]) -> None:
    from dnas.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def read_predictor_data(path: Path, genomes) -> tuple[list, list[float]]:
    """``(states, accuracies)`` from a ``predictor_data.csv`` written by ``dnas-evolve``."""

    from dnas.derive import ArchState
    from dnas.errors import DnasError, load_yaml, read_text
    from dnas.space import Architecture

    if not path.is_file() and not path.is_dir():
        raise FileNotFoundError(f"predictor data not found: {path}")
    states, accs = [], []
    text = read_text(path, "predictor.data", "CSV (a predictor_data.csv dnas-evolve wrote)")
    for i, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
        try:
            arch = Architecture.from_dict(load_yaml(row["arch"]))
            states.append(ArchState.from_arch(genomes.space, arch))
            accs.append(float(row["accuracy"]))
        except Exception as e:
            raise DnasError(f"{path}:{i}: not a predictor sample of this space ({e})") from e
    return states, accs


def _fit_predictor(
    cfg: DictConfig,
    out: Path,
    genomes: GenomeSpace,
    states: list[ArchState],
    accs: list[float],
    clock: Clock,
    say: Callable[[str], object],
) -> tuple[PredictorFitness, int, dict[str, float]]:
    """APQ's predictor, fit on the measured pairs (written to ``predictor_data.csv``).

    Returns:
        ``(fitness, pairs, figures)``: its ``PredictorFitness``, the number of pairs, and its
        quality figures for ``run.json``.
    """
    import torch
    import yaml

    from dnas.evolve import AccuracyPredictor, PredictorFitness
    from dnas.evolve.predictor import holdout_quality

    pc = cfg.predictor
    _write_csv(
        out / "predictor_data.csv",
        [
            {
                "accuracy": a,
                "arch": yaml.safe_dump(
                    s.to_arch(genomes.space).to_dict(), default_flow_style=True
                ).strip(),
            }
            for s, a in zip(states, accs)
        ],
        ["accuracy", "arch"],
    )
    quality: dict[str, float] = {}
    with clock.phase("predictor_fit"):
        if pc.get("holdout"):  # measured on a split, then the predictor is fit on every pair
            quality = holdout_quality(
                genomes.encode(states),
                torch.tensor(accs),
                float(pc.holdout),
                int(pc.hidden),
                int(pc.layers),
                seed=int(cfg.seed),
                epochs=int(pc.epochs),
            )
        # initialised from the seed, not from what the supernet training left in torch's global
        # generator: a run resumed after that training fits the same predictor
        with torch.random.fork_rng():
            torch.manual_seed(int(cfg.seed))
            predictor = AccuracyPredictor(genomes.num_features, int(pc.hidden), int(pc.layers))
        rmse = predictor.fit(
            genomes.encode(states),
            torch.tensor(accs),
            epochs=int(pc.epochs),
            seed=int(cfg.seed),
        )
    torch.save(predictor.state_dict(), out / "predictor.pt")
    say(f"predictor: {len(states)} samples, training RMSE {100 * rmse:.2f} points")
    if quality:
        say(
            f"predictor on {int(quality['holdout_samples'])} held-out pairs: RMSE "
            f"{100 * quality['holdout_rmse']:.2f} points (their spread "
            f"{100 * quality['holdout_std']:.2f}), Kendall tau {quality['holdout_kendall']:.3f}"
        )
    figures = {"predictor_train_rmse": rmse, **{f"predictor_{k}": v for k, v in quality.items()}}
    return PredictorFitness(predictor, genomes), len(states), figures


def _search(
    cfg: DictConfig,
    genomes: GenomeSpace,
    cost_fn: CostFn,
    targets: Targets,
    fitness: Fitness,
    rng: random.Random,
    bar: Progress,
    evaluated: Callable[[], int],
    on_state: Callable[[SearchState], None],
    resume: SearchState | None,
) -> SearchResult:
    """The configured search (``evolve`` or ``random_search``), its progress shown on ``bar``."""
    from dnas.evolve import evolve, random_search

    done = 0 if resume is None else resume.generation + 1
    if cfg.algorithm == "evolution":
        e = cfg.evolution
        task = bar.add_task("generations", total=int(e.generations) + 1, completed=done)
        return evolve(
            genomes,
            cost_fn,
            targets,
            fitness,
            rng,
            generations=int(e.generations),
            population=int(e.population),
            parents=int(e.parents),
            mutations=int(e.mutations),
            crossovers=int(e.crossovers),
            mutate_prob=float(e.mutate_prob),
            time_limit_s=None if e.time_limit_s is None else float(e.time_limit_s),
            evaluated=evaluated,
            on_generation=lambda r: bar.advance(task),
            on_state=on_state,
            resume=resume,
        )
    n = int(cfg.random.samples)
    task = bar.add_task("random architectures", total=(n + 99) // 100, completed=done)
    return random_search(
        genomes,
        cost_fn,
        targets,
        fitness,
        rng,
        n,
        evaluated=evaluated,
        on_generation=lambda r: bar.advance(task),
        on_state=on_state,
        resume=resume,
    )


def check_evolve_settings(cfg: DictConfig) -> None:
    """Every number of the evolution, the random search, the evaluation and the predictor in its
    range, before the supernet trains (they were checked only when their phase began, or never).

    Raises:
        DnasError: naming the key, its value and what is allowed.
    """
    from dnas.errors import DnasError

    def whole(key: str, low: int, value=None) -> int:
        v = OmegaConf.select(cfg, key) if value is None else value
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise DnasError(f"{key} must be a whole number >= {low}, got {v!r}")
        return v

    ev = cfg.evolution
    population = whole("evolution.population", 1)
    parents = whole("evolution.parents", 1)
    if parents > population:
        raise DnasError(
            f"evolution.parents={parents} exceeds evolution.population={population}: "
            "parents are chosen from the population"
        )
    for key in ("evolution.generations", "evolution.mutations", "evolution.crossovers"):
        whole(key, 0)
    p = ev.mutate_prob
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
        raise DnasError(f"evolution.mutate_prob must be a probability in [0, 1], got {p!r}")
    limit = ev.get("time_limit_s")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0
    ):
        raise DnasError(f"evolution.time_limit_s must be > 0 seconds or null, got {limit!r}")
    whole("random.samples", 1)
    whole("evaluation.images", 1)
    whole("evaluation.bn_batches", 0)
    whole("evaluation.recheck", 0)
    whole("predictor.samples", 2)
    whole("predictor.hidden", 1)
    whole("predictor.layers", 1)
    whole("predictor.epochs", 1)
    h = cfg.predictor.holdout
    if isinstance(h, bool) or not isinstance(h, (int, float)) or not 0.0 <= float(h) < 1.0:
        raise DnasError(f"predictor.holdout must be in [0, 1), got {h!r}")


def run(cfg: DictConfig, output_dir: str | Path | None = None) -> float:
    """One evolutionary (or random) search; returns the test accuracy of the architecture found."""
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import RichProgressBar
    from rich.console import Console
    from rich.progress import Progress

    from dnas.atomic import atomic_path
    from dnas.checkpoint import (
        atomic_checkpoint_io,
        checkpoint_callback,
        last_checkpoint,
        read_checkpoint,
    )
    from dnas.cli.common import (
        check_config,
        check_data,
        check_epochs,
        fit_classes_to_data,
        interrupted,
        resolved_config,
        silence_lightning,
        write_run_record,
    )
    from dnas.cli.common import output_dir as make_output_dir
    from dnas.cli.signals import StopRequested, stop_on_signals
    from dnas.cli.train import evaluate
    from dnas.cost.exact import ExactCost
    from dnas.cost.hardware import BitFusionConfig
    from dnas.cost.table import load_or_build
    from dnas.cost.targets import check_jointly_feasible, resolve_targets
    from dnas.errors import DnasError, Interrupted, NonFiniteLossError
    from dnas.evolve import DirectFitness, GenomeSpace
    from dnas.evolve.checkpoint import Checkpointer, check_resumable, load_resumed, run_settings
    from dnas.evolve.plot import plot_evolution
    from dnas.space import SearchSpace
    from dnas.supernet import recalibrate_bn
    from dnas.train.load import SPACE_FILE, load_supernet, save_space

    silence_lightning()
    check_config(cfg)
    console = Console(stderr=True)
    key = (str(cfg.algorithm), str(cfg.fitness))
    if key not in METHODS:
        raise DnasError(
            f"algorithm={cfg.algorithm} fitness={cfg.fitness}: algorithm is one of "
            "[evolution, random], fitness one of [predictor, direct]"
        )
    method = METHODS[key]
    check_evolve_settings(cfg)
    pl.seed_everything(int(cfg.seed), workers=True)
    rng = random.Random(int(cfg.seed))
    clock = Clock()

    # Everything that can fail is checked before training starts.
    hw = BitFusionConfig.from_dict(OmegaConf.to_container(cfg.hardware, resolve=True))
    data = instantiate(cfg.data)
    fit_classes_to_data(cfg, data, console.print)
    space = SearchSpace.from_dict(OmegaConf.to_container(cfg.space, resolve=True))
    space.validate_bits(hw.pmax_bits)
    check_data(space, data)
    if data.arch_fraction <= 0:
        raise DnasError(
            "dnas-evolve measures fitness on the architecture split: data.arch_fraction > 0"
        )
    settings = run_settings(resolved_config(cfg))
    resume_dir = cfg.get("resume")
    ckpt_path = cfg.get("ckpt_path")
    if resume_dir and ckpt_path:
        raise DnasError(
            f"resume={resume_dir} and ckpt_path={ckpt_path}: give one (resume= resumes the "
            "supernet training from the run's own checkpoints/last.ckpt)"
        )
    recorded = check_resumable(resume_dir, settings) if resume_dir else None
    table, table_path, _ = load_or_build(space, hw, cfg.table.path, cfg.table.backend)
    extremes = table.extremes(space)
    targets = resolve_targets(OmegaConf.to_container(cfg.target, resolve=True), extremes)
    check_jointly_feasible(targets, space, table)
    genomes = GenomeSpace(space)
    costs = ExactCost(space, table)
    ev = cfg.evaluation
    resumed = None
    supernet_path = cfg.supernet
    if resume_dir:
        resumed = load_resumed(resume_dir, recorded, genomes, table.header.content_hash)
        resume_dir = resumed.run_dir
        if supernet_path is None and (resume_dir / "supernet.pt").is_file():
            supernet_path = resume_dir / "supernet.pt"  # written once its training had finished
        elif supernet_path is None:
            ckpt_path = last_checkpoint(resume_dir)  # None: it stopped before its first epoch
    if supernet_path is not None:
        load_supernet(supernet_path, space)  # a foreign checkpoint fails here
    else:
        check_epochs(cfg.trainer.get("max_epochs"))
        if ckpt_path:
            read_checkpoint(ckpt_path)  # unreadable or foreign: refused before any work
    if cfg.fitness == "predictor" and cfg.predictor.data is not None:
        from dnas.evolve.predictor import check_holdout

        given, _ = read_predictor_data(Path(cfg.predictor.data), genomes)
        if cfg.predictor.get("holdout"):  # refused now, not after the supernet has trained
            check_holdout(len(given), float(cfg.predictor.holdout), str(cfg.predictor.data))
        elif not given:
            raise DnasError(f"predictor.data={cfg.predictor.data} holds no sample")
    console.print(f"{method}: budget {targets.describe()}, cost table {table_path}")
    if resumed is not None:
        done = "its search at generation" if resumed.search else "no search yet"
        console.print(
            f"resuming {resume_dir}: supernet "
            + ("trained" if supernet_path else f"from {ckpt_path or 'the start'}")
            + f", {len(resumed.measured)} architectures measured, {done}"
            + (f" {resumed.search.generation}" if resumed.search else "")
        )
    out = make_output_dir(output_dir, cfg)
    checkpoints = Checkpointer(out, genomes, settings, table.header.content_hash)
    checkpoints.save_search(
        resumed.search if resumed else None,
        resumed.predicted if resumed else 0,
        resumed.measured if resumed else {},
    )

    # 1. the supernet
    data.setup("fit")
    if supernet_path is not None:
        supernet = load_supernet(supernet_path, space)
        clock.times.update(supernet_s=0.0, supernet_cpu_s=0.0)
        supernet_source = (
            str(Path(cfg.supernet).resolve()) if cfg.supernet is not None else "trained"
        )
    else:
        from dnas.evolve.supernet import UniformSupernetModule

        module = UniformSupernetModule(
            space,
            instantiate(cfg.optimizer.weights),
            instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
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
            limit_val_batches=0,
        )
        with clock.phase("supernet"):
            try:
                trainer.fit(module, datamodule=data, ckpt_path=ckpt_path or None)
            except (SystemExit, NonFiniteLossError) as e:  # SIGTERM, Ctrl-C, a NaN loss
                stopped = interrupted(e, out, "the supernet training")
                if last_checkpoint(out) is not None:
                    stopped = Interrupted(f"{stopped} (or resume={out})", stopped.exit_code)
                raise stopped from None
        supernet = module.supernet
        supernet_source = "trained"
    with atomic_path(out / "supernet.pt") as tmp:  # a resumed run trusts it whole
        torch.save(supernet.state_dict(), tmp)
    supernet.eval()

    # 2. fitness
    gen = torch.Generator().manual_seed(int(cfg.seed) * 7 + 1)
    xa, ya = data.sample("arch", int(ev.images), gen)
    calib = [b[0] for b in data.bn_recalibration_loader(int(ev.bn_batches))]
    direct = DirectFitness(supernet, genomes, xa, ya, calib)
    if resumed is not None:
        direct.restore(resumed.measured.items())
    n_samples = 0
    predictor_quality: dict[str, float] = {}
    doing = "the measurements"
    try:
        with stop_on_signals() as stop:

            def measure(
                states: Sequence[ArchState], advance: Callable[[], object] = lambda: None
            ) -> list[float]:
                """Direct fitness, saved as it goes, stopping between architectures on a signal."""
                accs = []
                for s in states:
                    stop.check()
                    accs.append(direct.accuracy(s))
                    checkpoints.save_measured(direct.cache)
                    advance()
                return accs

            fitness = measure
            if cfg.fitness == "predictor":
                pc = cfg.predictor
                with clock.phase("predictor_data"):
                    if pc.data is not None:
                        states, accs = read_predictor_data(Path(pc.data), genomes)
                    else:
                        # drawn from the seed first (a resumed run draws the same), then measured
                        states = [genomes.random(rng) for _ in range(int(pc.samples))]
                        doing = f"the predictor data ({len(states)} architectures)"
                        with Progress(console=console, transient=True) as bar:
                            task = bar.add_task("predictor data", total=len(states))
                            accs = measure(states, lambda: bar.advance(task))
                        checkpoints.save_measured(direct.cache, force=True)
                fitness, n_samples, predictor_quality = _fit_predictor(
                    cfg, out, genomes, states, accs, clock, console.print
                )
                if resumed is not None and resumed.search is not None:
                    fitness.queried = resumed.predicted

            # 3. search
            def on_state(state: SearchState) -> None:
                checkpoints.save_search(state, getattr(fitness, "queried", 0), direct.cache)
                stop.check()

            doing = f"the {cfg.algorithm} search"
            with clock.phase("evolution"), Progress(console=console, transient=True) as bar:
                result = _search(
                    cfg,
                    genomes,
                    costs.total,
                    targets,
                    fitness,
                    rng,
                    bar,
                    evaluated=lambda: direct.evaluated,
                    on_state=on_state,
                    resume=resumed.search if resumed is not None else None,
                )
            doing = "the re-measurement of the fittest"
            with clock.phase("recheck"):
                top = result.ranked[: max(1, int(ev.recheck))]
                measured = [(direct.accuracy(c.state), i, c) for i, c in enumerate(top)]
                stop.check()
    except BaseException as e:
        with contextlib.suppress(OSError):  # whatever stopped the run, keep what it measured
            checkpoints.save_measured(direct.cache, force=True)
        if not isinstance(e, StopRequested):
            raise
        at = checkpoints.search
        held = f"{direct.evaluated} measured architectures" + (
            f" and the search after generation {at.generation}" if at is not None else ""
        )
        raise Interrupted(
            f"{doing} was stopped by {e.name}; no result was written; {checkpoints.dir} holds "
            f"{held}: resume with resume={out} and the same settings",
            e.exit_code,
        ) from None
    rows = result.history
    best_acc, _, best = max(measured, key=lambda t: (t[0], -t[1]))

    # 4. the architecture found, evaluated as dnas-search evaluates its own
    arch = best.state.to_arch(space)
    latency_ms, energy_mj = table.arch_cost(space, arch)
    supernet.set_mode("fixed", arch)
    recalibrate_bn(
        supernet, data.bn_recalibration_loader(int(cfg.final.bn_batches)), int(cfg.final.bn_batches)
    )
    test_acc = evaluate(supernet, data.test_dataloader())
    metrics = {
        "latency_ms": latency_ms,
        "energy_mj": energy_mj,
        "test_acc": test_acc,
        "fitness": best_acc,
    }
    for m, t in targets.active().items():
        metrics[f"target_{m}"] = t
    arch = arch.with_metrics(**metrics).priced_by(table.header.content_hash)
    arch.save(out / "arch.yaml")
    save_space(space, out / SPACE_FILE)
    header = ["generation", "best_fitness", "mean_fitness", "evaluated", "wall_s"]
    _write_csv(out / "evolution.csv", rows, header)
    plot_evolution(rows, out / "evolution.png", title=f"{method}, {targets.describe()}")
    total_s = sum(v for k, v in clock.times.items() if k.endswith("_s") and not k.endswith("cpu_s"))
    total_cpu = sum(v for k, v in clock.times.items() if k.endswith("cpu_s"))
    write_run_record(
        out,
        method,
        table_hash=table.header.content_hash,
        supernet=supernet_source,
        resumed_from=None if resumed is None else str(resumed.run_dir),
        evaluated=direct.evaluated,
        predictor_samples=n_samples,
        predicted=getattr(fitness, "queried", 0),
        **predictor_quality,
        generations=len(rows) - 1 if cfg.algorithm == "evolution" else 0,
        search_s=round(total_s, 2),
        search_cpu_s=round(total_cpu, 2),
        **clock.times,
        config=resolved_config(cfg),
    )
    console.print(
        f"{method}: {latency_ms:.4f} ms, {energy_mj:.4f} mJ (budget {targets.describe()}); "
        f"fitness {100 * best_acc:.2f}%, test accuracy {100 * test_acc:.2f}% "
        f"({direct.evaluated} measured) -> {out}"
    )
    return test_acc


@hydra.main(config_path="../conf", config_name="evolve", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    return run_command("dnas-evolve", run, cfg)


def main() -> None:
    hydra_entry("dnas-evolve", _hydra_main)


if __name__ == "__main__":
    main()
