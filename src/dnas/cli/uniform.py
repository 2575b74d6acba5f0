"""``dnas-uniform``: the hand-designed baseline for a budget (Hydra entry point).

1. Candidates (``dnas.evolve.uniform``): for every bit level, kernel and depth, the uniform network
   as wide as fits the budget by exact table cost; those another candidate dominates (same kernel,
   at least its bits, width and depth) are dropped unless ``uniform.prune=false``.
2. Each candidate is trained from random weights by ``dnas-train``'s recipe (this config's
   ``trainer``, ``optimizer``, ``train`` and ``data``) in ``candidates/<name>/``.
3. The candidate of the highest validation accuracy is the baseline: ``arch.yaml`` (its exact cost,
   the target, its validation and test accuracy) and ``model.pt``. The test accuracy of every
   candidate is recorded beside it but never chooses.

``resume=RUN`` continues an interrupted run: finished candidates are kept, an interrupted one
continues from its own ``checkpoints/last.ckpt``.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from dnas.cli.common import hydra_entry, run_command

CANDIDATES = "candidates"
HEADER = [
    "name",
    "bits",
    "kernel",
    "depth",
    "position",
    "latency_ms",
    "energy_mj",
    "budget_used",
    "val_acc",
    "test_acc",
    "train_s",
    "chosen",
]


def _levels(cfg: DictConfig, space, hw, metrics) -> list[int]:
    from dnas.errors import DnasError
    from dnas.evolve.uniform import default_levels

    bits = cfg.uniform.bits
    if bits == "auto":
        return default_levels(space, hw.pmax_bits, hw.pmin_bits, metrics)
    if not OmegaConf.is_list(bits) or not bits:
        raise DnasError(f"uniform.bits must be auto or a non-empty list of bit-widths, got {bits}")
    for b in bits:
        if isinstance(b, bool) or not isinstance(b, int):
            raise DnasError(f"uniform.bits: {b!r} is not a bit-width (an integer)")
    return sorted(set(bits))


def _ints(value, name: str) -> list[int]:
    from dnas.errors import DnasError

    if not OmegaConf.is_list(value) or not value:
        raise DnasError(f"{name} must be a non-empty list, got {value}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int):
            raise DnasError(f"{name}: {v!r} is not an integer")
    return list(value)


def _finished(run_dir: Path) -> dict | None:
    """The metrics of a finished candidate training (its ``arch.yaml`` with a test accuracy)."""
    from dnas.space import Architecture

    path = run_dir / "arch.yaml"
    if not path.is_file() or not (run_dir / "model.pt").is_file():
        return None
    try:
        metrics = Architecture.load(path).metrics
    except Exception:
        return None
    return metrics if "test_acc" in metrics and "val_acc" in metrics else None


def _write_csv(path: Path, rows: list[dict]) -> None:
    from dnas.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HEADER, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def plot_candidates(rows: list[dict], metric: str, target: float, path: Path, title: str) -> None:
    """Validation accuracy of every trained candidate against its exact cost, one line per bit
    level (full depth solid, short dashed), the chosen one ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dnas.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6.5, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, b in enumerate(sorted({r["bits"] for r in rows})):
        for depth, ls in (("full", "-"), ("short", "--")):
            pts = sorted(
                (r[metric], 100 * r["val_acc"], r["kernel"])
                for r in rows
                if r["bits"] == b and r["depth"] == depth and r["val_acc"] != ""
            )
            if not pts:
                continue
            x, y, _ = zip(*pts)
            ax.plot(x, y, ls, marker="o", color=colors[i % len(colors)], label=f"{b} bits, {depth}")
            for xi, yi, ki in pts:
                ax.annotate(
                    f"k{ki}", (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
    chosen = [r for r in rows if r["chosen"]]
    if chosen:
        ax.scatter(
            [chosen[0][metric]],
            [100 * chosen[0]["val_acc"]],
            s=160,
            facecolors="none",
            edgecolors="crimson",
            label="chosen (validation)",
        )
    ax.axvline(target, color="crimson", ls=":", lw=1)
    ax.set_xlabel(f"exact {metric.replace('_', ' (')})")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def run(cfg: DictConfig, output_dir: str | Path | None = None) -> float:
    """The uniform baseline for one budget; returns the chosen candidate's test accuracy (NaN
    with ``uniform.train=false``)."""
    from rich.console import Console

    from dnas.cli import train as train_cli
    from dnas.cli.common import (
        check_config,
        check_data,
        check_epochs,
        fit_classes_to_data,
        resolved_config,
        silence_lightning,
        write_run_record,
    )
    from dnas.cli.common import output_dir as make_output_dir
    from dnas.cost.exact import ExactCost
    from dnas.cost.hardware import BitFusionConfig
    from dnas.cost.table import load_or_build
    from dnas.cost.targets import check_jointly_feasible, resolve_targets
    from dnas.errors import DnasError, Interrupted
    from dnas.evolve.uniform import prune_dominated, uniform_candidates
    from dnas.space import SearchSpace
    from dnas.train.load import SPACE_FILE, save_space

    silence_lightning()
    check_config(cfg)
    console = Console(stderr=True)

    # Everything that can fail is checked before any training.
    if cfg.get("arch") is not None or cfg.get("ckpt_path") is not None or cfg.init != "scratch":
        raise DnasError(
            "dnas-uniform trains its own candidates from scratch: leave arch, ckpt_path and init "
            "unset (resume=RUN continues an interrupted run)"
        )
    if not isinstance(cfg.uniform.train, bool) or not isinstance(cfg.uniform.prune, bool):
        raise DnasError("uniform.train and uniform.prune must be true or false")
    if cfg.uniform.train:
        check_epochs(cfg.trainer.get("max_epochs"))
    hw = BitFusionConfig.from_dict(OmegaConf.to_container(cfg.hardware, resolve=True))
    data = None
    if cfg.uniform.train:
        from hydra.utils import instantiate

        data = instantiate(cfg.data)
        if not getattr(data, "val_fraction", 0):
            raise DnasError(
                "dnas-uniform chooses its baseline on the validation split, never the test set: "
                "give data.val_fraction > 0"
            )
        fit_classes_to_data(cfg, data, console.print)
    space = SearchSpace.from_dict(OmegaConf.to_container(cfg.space, resolve=True))
    space.validate_bits(hw.pmax_bits)
    if data is not None:
        check_data(space, data)
    table, table_path, _ = load_or_build(space, hw, cfg.table.path, cfg.table.backend)
    targets = resolve_targets(
        OmegaConf.to_container(cfg.target, resolve=True), table.extremes(space)
    )
    check_jointly_feasible(targets, space, table)
    active = targets.active()
    levels = _levels(cfg, space, hw, active)
    kernels = _ints(cfg.uniform.kernels, "uniform.kernels")
    depths = list(cfg.uniform.depths) if OmegaConf.is_list(cfg.uniform.depths) else None
    if not depths:
        raise DnasError(f"uniform.depths must be a non-empty list, got {cfg.uniform.depths}")
    candidates, unfit = uniform_candidates(
        space, ExactCost(space, table), targets, levels, kernels, depths
    )
    if not candidates:
        raise DnasError(
            f"no uniform network fits the budget {targets.describe()} (tried bits {levels}, "
            f"kernels {kernels}, depths {depths}): raise the budget or allow other bits"
        )
    dropped = []
    if cfg.uniform.prune:
        candidates, dropped = prune_dominated(candidates)
    resume = cfg.get("resume")
    if resume is not None:
        out = Path(resume)
        if not (out / CANDIDATES).is_dir():
            raise DnasError(f"resume={resume}: not a dnas-uniform run (no {CANDIDATES}/ in it)")
        recorded = (
            json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
        )
        if recorded.get("settings") not in (None, _settings(cfg)):
            raise DnasError(
                f"resume={resume}: that run was made with other settings; resume it with its own"
            )
    else:
        out = make_output_dir(output_dir, cfg)
    metric = next(iter(active))
    target = active[metric]

    console.print(
        f"uniform: budget {targets.describe()}, cost table {table_path}; bits {levels}, kernels "
        f"{kernels}, depths {depths}: {len(candidates)} candidate(s) to train"
        + (f", {len(dropped)} dominated" if dropped else "")
        + (
            f", {len(unfit)} over budget even at the narrowest ({', '.join(unfit)})"
            if unfit
            else ""
        )
    )
    for a, by in dropped:
        console.print(
            f"  {a.name} (position {a.position:.2f}) dropped: {by.name} has at least as much"
        )
    (out / CANDIDATES).mkdir(parents=True, exist_ok=True)
    save_space(space, out / SPACE_FILE)
    rows = []
    for c in candidates:
        arch = (
            c.arch(space)
            .with_metrics(**c.cost, **{f"target_{m}": t for m, t in active.items()})
            .priced_by(table.header.content_hash)
        )
        arch_path = arch.save(out / CANDIDATES / f"{c.name}.yaml")
        rows.append(
            {
                "name": c.name,
                "bits": c.bits,
                "kernel": c.kernel,
                "depth": c.depth,
                "position": round(c.position, 4),
                "latency_ms": c.cost["latency_ms"],
                "energy_mj": c.cost["energy_mj"],
                "budget_used": max(c.cost[m] / t for m, t in active.items()),
                "val_acc": "",
                "test_acc": "",
                "train_s": "",
                "chosen": "",
                "_arch": arch_path,
            }
        )
        console.print(
            f"  {c.name}: position {c.position:.2f}, {c.cost['latency_ms']:.4f} ms, "
            f"{c.cost['energy_mj']:.4f} mJ ({100 * rows[-1]['budget_used']:.0f} % of the budget)"
        )

    def public(rs):
        return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rs]

    settings = _settings(cfg)
    t0 = time.perf_counter()
    if not cfg.uniform.train:
        _write_csv(out / "candidates.csv", public(rows))
        write_run_record(
            out,
            "uniform",
            table_hash=table.header.content_hash,
            settings=settings,
            trained=False,
            config=resolved_config(cfg),
        )
        console.print(f"uniform: {len(rows)} candidates listed (not trained) -> {out}")
        return float("nan")
    write_run_record(
        out,
        "uniform",
        table_hash=table.header.content_hash,
        settings=settings,
        finished=False,
        config=resolved_config(cfg),
    )
    for i, r in enumerate(rows):
        run_dir = out / CANDIDATES / r["name"]
        done = _finished(run_dir)
        if done is None:
            console.print(f"[{i + 1}/{len(rows)}] training {r['name']} from scratch")
            ccfg = OmegaConf.merge(cfg, {"arch": str(r["_arch"]), "init": "scratch"})
            last = run_dir / "checkpoints" / "last.ckpt"
            if last.is_file():
                ccfg.ckpt_path = str(last)
            t1 = time.perf_counter()
            try:
                train_cli.run(ccfg, output_dir=run_dir)
            except (Interrupted, KeyboardInterrupt) as e:
                raise _stopped(e, out, r["name"], i, len(rows)) from None
            done = _finished(run_dir)
            r["train_s"] = round(time.perf_counter() - t1, 1)
        else:
            console.print(f"[{i + 1}/{len(rows)}] {r['name']}: already trained")
            r["train_s"] = round(done.get("finetune_s", 0.0), 1)
        r["val_acc"], r["test_acc"] = done["val_acc"], done["test_acc"]
        _write_csv(out / "candidates.csv", public(rows))  # as it goes
    best = max(rows, key=lambda r: r["val_acc"])  # the first of equals: the input order
    best["chosen"] = 1
    _write_csv(out / "candidates.csv", public(rows))
    chosen_dir = out / CANDIDATES / best["name"]
    from dnas.space import Architecture

    arch = Architecture.load(chosen_dir / "arch.yaml")
    arch.save(out / "arch.yaml")
    shutil.copyfile(chosen_dir / "model.pt", out / "model.pt")
    plot_candidates(
        public(rows),
        metric,
        target,
        out / "uniform.png",
        f"uniform candidates, {targets.describe()}: chosen {best['name']}",
    )
    write_run_record(
        out,
        "uniform",
        table_hash=table.header.content_hash,
        settings=settings,
        finished=True,
        chosen=best["name"],
        candidates=len(rows),
        dropped=[a.name for a, _ in dropped],
        over_budget=unfit,
        search_s=round(time.perf_counter() - t0, 2),
        config=resolved_config(cfg),
    )
    console.print(
        f"uniform: chose {best['name']} on validation ({100 * best['val_acc']:.2f} %): "
        f"{best['latency_ms']:.4f} ms, {best['energy_mj']:.4f} mJ, test accuracy "
        f"{100 * best['test_acc']:.2f} % -> {out}"
    )
    return float(best["test_acc"])


def _stopped(e: BaseException, out: Path, name: str, i: int, n: int):
    """The ``Interrupted`` for a signal (or a non-finite loss) while training candidate ``i``:
    what is kept and the ``resume=`` that continues the run."""
    from dnas.cli.common import Terminated
    from dnas.errors import Interrupted

    signal_code = 143 if isinstance(e, Terminated) else 130
    code = e.exit_code if isinstance(e, Interrupted) else signal_code
    why = {143: "SIGTERM", 130: "an interrupt"}.get(code, "a non-finite loss")
    return Interrupted(
        f"stopped by {why} while training {name} ({i + 1}/{n}); the {i} finished candidate(s) "
        f"are kept; continue with: dnas-uniform resume={out}",
        code,
    )


def _settings(cfg: DictConfig) -> dict:
    """What a resumed run must share with the run it continues."""
    keep = (
        "seed",
        "target",
        "uniform",
        "space",
        "hardware",
        "data",
        "trainer",
        "optimizer",
        "train",
    )
    return {
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in keep
        if k in cfg
    }


@hydra.main(config_path="../conf", config_name="uniform", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    return run_command("dnas-uniform", run, cfg)


def main() -> None:
    hydra_entry("dnas-uniform", _hydra_main)


if __name__ == "__main__":
    main()
