"""Head-to-head: the differentiable search against APQ's evolution and random search, on equal terms.

Every method searches the same space (``fmnist_mbv2``) on the same data split and cost table, at
the same targets; every architecture found is finetuned by the same ``dnas-train`` recipe from its
own search's supernet weights and tested on the Fashion-MNIST test set.

Methods and seeds (full run):
- ``dnas``: ``dnas-search search.arch_every=1`` (seeds 0, 1), a full run per target, an
  architecture step every batch (the default until this benchmark measured the next two);
- ``dnas_front``: ``dnas-search search.arch_every=1 front=[...]`` (seeds 0, 1): one run for all
  the targets, one architecture distribution per target on shared weights (the amortised
  differentiable search);
- ``dnas_every2`` and ``dnas_front_every2`` (seeds 0, 1): the same with ``search.arch_every=2``, an
  architecture step every second batch (search epochs ~25 % cheaper), ``dnas-search``'s default;
- ``evolution_predictor``: ``dnas-evolve`` with APQ's predictor (seeds 0, 1);
- ``evolution_direct``: ``dnas-evolve fitness=direct`` (seed 0);
- ``random``: ``dnas-evolve algorithm=random fitness=direct`` (seed 0).
The uniform supernet and the predictor data do not depend on the target: they are computed once
per seed (at the first target) and reused (``supernet=``, ``predictor.data=``); each record carries
that one-off cost (``one_off_s``) apart from its per-target cost (``per_target_s``).

Each finished run is appended to ``bench/results/search.json`` at once (``--quick``:
``search_quick.json``), and a rerun skips what is recorded, so the benchmark runs across sessions.
Wall-clock and process CPU time are recorded for every phase: on 2 cores anything else running
slows a run by up to 2x, so compare on CPU time where the machine was shared. Machines of this
kind also differ from day to day (up to ~1.8x for the same run), so every record made since
2026-12-01 carries ``speed_s``, the machine's speed figure measured just before it
(``bench/speed.py``: one fixed supernet training step); compare wall-clock across days only
through it.

    python bench/bench_search.py              # the full comparison (hours; resumable)
    python bench/bench_search.py --quick      # a smoke test (< 5 min)
    python bench/bench_search.py --plot       # redraw docs/search_vs_evolution.png from the records
    python bench/bench_search.py --scratch    # retrain every found architecture from scratch

``--scratch`` separates the architecture from the weights it inherits: the finetuned accuracy
above starts from each search's own supernet, so a method whose supernet fits its chosen child
better (the differentiable search trains the weights under the architecture distribution it is
converging to; APQ's uniform supernet spreads them over every child) gains there too. It trains
every recorded architecture from random weights by one recipe (same seed, same epochs), appending
to ``bench/results/search_scratch.json`` one record per architecture (resumable, like the rest).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"

FULL = {
    "targets": [
        ("latency_ms", "latency_frac", 0.15),
        ("latency_ms", "latency_frac", 0.3),
        ("latency_ms", "latency_frac", 0.5),
        ("energy_mj", "energy_frac", 0.3),
    ],
    "runs": [
        ("dnas", 0),
        ("evolution_predictor", 0),
        ("evolution_direct", 0),
        ("random", 0),
        ("dnas", 1),
        ("evolution_predictor", 1),
        ("dnas_front", 0),
        ("dnas_front", 1),
        ("dnas_every2", 0),
        ("dnas_front_every2", 0),
        ("dnas_every2", 1),
        ("dnas_front_every2", 1),
    ],
    "common": [],
    # conf/experiment/compare*.yaml: predictor N = 600, 500 generations; direct: 8 generations;
    # random: 800 samples; 1000 images and 10 BN batches per direct evaluation
    "experiment": {
        "evolution_predictor": "compare",
        "evolution_direct": "compare_direct",
        "random": "compare",
    },
    "evolve": [],
    "direct": [],
    "random": [],
    "train": ["trainer.max_epochs=2"],
    # --scratch: every architecture trained from random weights by this one recipe
    "scratch": ["init=scratch", "seed=0", "trainer.max_epochs=4"],
    # One run per method with more search time, at one target: does the ranking change?
    "larger": {
        "target": ("latency_ms", "latency_frac", 0.3),
        "dnas": ["trainer.max_epochs=12", "search.warmup_epochs=2"],
        "evolution_predictor": ["predictor.samples=2000"],
        "evolution_direct": ["evolution.generations=20"],
        "random": ["random.samples=2000"],
    },
}
QUICK = {
    "targets": [("latency_ms", "latency_frac", 0.3)],
    "runs": [("dnas", 0), ("evolution_predictor", 0), ("random", 0)],
    "common": ["data.limit_train=6000", "data.limit_test=1000", "trainer.max_epochs=2"],
    "evolve": [
        "predictor.samples=60",
        "predictor.epochs=100",
        "evolution.generations=20",
        "evaluation.images=300",
        "evaluation.bn_batches=3",
        "evaluation.recheck=2",
    ],
    "direct": ["evolution.generations=2"],
    "random": ["random.samples=60"],
    "train": ["trainer.max_epochs=1", "data.limit_train=6000", "data.limit_test=1000"],
    "scratch": [
        "init=scratch",
        "seed=0",
        "trainer.max_epochs=1",
        "data.limit_train=6000",
        "data.limit_test=1000",
    ],
}
# The differentiable variants: overrides of a one-target search / a front
# (``dnas`` and ``dnas_front`` pinned to an architecture step every batch, the default until the
# head-to-head measured ``arch_every=2``: their records were run that way)
DNAS_ARGS = {"dnas": ["search.arch_every=1"], "dnas_every2": ["search.arch_every=2"]}
FRONT_ARGS = {"dnas_front": ["search.arch_every=1"], "dnas_front_every2": ["search.arch_every=2"]}
EVOLVE_ARGS = {
    "evolution_predictor": ["algorithm=evolution", "fitness=predictor"],
    "evolution_direct": ["algorithm=evolution", "fitness=direct"],
    "random": ["algorithm=random", "fitness=direct"],
}


def _compose(name: str, overrides: list[str]):
    from hydra import compose, initialize_config_module

    with initialize_config_module("dnas.conf", version_base="1.3"):
        return compose(name, overrides=overrides, return_hydra_config=True)


def _machine() -> dict:
    import torch

    return {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}


def _speed_s() -> float:
    """The machine's speed figure now (``bench/speed.py``: seconds of one reference step)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_speed", Path(__file__).with_name("speed.py")
    )
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    return speed.speed_s()


def _load(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def _save(path: Path, records: list[dict]) -> None:
    from dnas.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(records, indent=1) + "\n")


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - t0, time.process_time() - c0


def search_one(
    method, seed, target, cfg, runs: Path, oneoff: dict, extra: list[str] | None = None
) -> tuple[Path, dict]:
    """Run one search; returns its run directory and its cost figures."""
    _, key, frac = target
    if method in FRONT_ARGS:
        return front_member(method, seed, target, cfg, runs)
    out = runs / f"{method}_s{seed}_{key}{frac}{'_larger' if extra else ''}"
    tgt = ["target.latency_frac=null", f"target.{key}={frac}", *(extra or [])]
    if method in DNAS_ARGS:
        from dnas.cli.search import run

        overrides = [*cfg["common"], *DNAS_ARGS[method], *tgt, f"seed={seed}"]
        overrides.append(f"hydra.runtime.output_dir={out}")
        _, wall, cpu = _timed(lambda: run(_compose("search", overrides), output_dir=out))
        return out, {
            "search_s": wall,
            "search_cpu_s": cpu,
            "one_off_s": 0.0,
            "per_target_s": wall,
            "evaluated": 0,
        }
    from dnas.cli.evolve import run

    overrides = [*cfg["common"], *cfg["evolve"], *EVOLVE_ARGS[method], *tgt, f"seed={seed}"]
    if cfg.get("experiment", {}).get(method):
        overrides.insert(0, f"experiment={cfg['experiment'][method]}")
    overrides += cfg["direct"] if method == "evolution_direct" else []
    overrides += cfg["random"] if method == "random" else []
    shared = oneoff.setdefault(seed, {})
    predictor = method == "evolution_predictor"
    if shared.get("supernet"):
        overrides.append(f"supernet={shared['supernet']}")
    if predictor and shared.get("pdata") and not extra:  # a larger budget measures its own
        overrides.append(f"predictor.data={shared['pdata']}")
    _, wall, cpu = _timed(lambda: run(_compose("evolve", overrides), output_dir=out))
    rec = json.loads((out / "run.json").read_text())
    if not shared.get("supernet"):  # trained here: later targets reuse it
        shared.update(supernet=str(out / "supernet.pt"), supernet_s=rec["supernet_s"])
    if predictor and not shared.get("pdata") and not extra:  # measured here
        shared.update(pdata=str(out / "predictor_data.csv"), pdata_s=rec["predictor_data_s"])
    pdata_s = rec.get("predictor_data_s", 0.0) if extra else shared.get("pdata_s", 0.0)
    one_off = shared["supernet_s"] + (pdata_s if predictor else 0.0)
    own = rec["search_s"] - rec["supernet_s"] - (rec["predictor_data_s"] if predictor else 0.0)
    return out, {
        "search_s": one_off + own,
        "search_cpu_s": rec["search_cpu_s"],
        "one_off_s": one_off,
        "per_target_s": own,
        "evaluated": rec["evaluated"],
        "predictor_samples": rec.get("predictor_samples", 0),
        "generations": rec.get("generations", 0),
        "wall_this_run_s": wall,
        "cpu_this_run_s": cpu,
    }


def surviving_oneoff(records: list[dict]) -> dict:
    """Per seed, the target-independent work earlier runs did (the uniform supernet, APQ's
    predictor data) with its time, where its file still exists: a run reuses it instead of
    computing it again, and one whose file is gone (``bench/runs/`` is not kept between machines)
    is computed again and timed afresh."""
    oneoff: dict = {}
    for r in records:
        for k, k_s in (("supernet", "supernet_s"), ("pdata", "pdata_s")):
            found = r.get(f"one_off_{k}")
            if found is not None and Path(found).is_file():
                shared = oneoff.setdefault(r["seed"], {})
                if k not in shared:
                    shared.update({k: found, k_s: r[f"one_off_{k_s}"]})
    return oneoff


def front_member(method, seed, target, cfg, runs: Path) -> tuple[Path, dict]:
    """Target ``target``'s member of one ``front=[...]`` search over all of ``cfg["targets"]``.

    The front is searched once per seed (its wall-clock and CPU time are kept in
    ``front_time.json`` beside it, so a later session reuses it); every member's record carries the
    whole front's cost as its one-off cost, since any one of them needs the whole run.
    """
    from dnas.cli.search import run

    out = runs / f"{method}_s{seed}"
    timing = out / "front_time.json"
    if not timing.is_file():
        spec = ",".join("{" + f"{k}:{f}" + "}" for _, k, f in cfg["targets"])
        overrides = [*cfg["common"], *FRONT_ARGS[method], f"front=[{spec}]", f"seed={seed}"]
        overrides.append(f"hydra.runtime.output_dir={out}")
        _, wall, cpu = _timed(lambda: run(_compose("search", overrides), output_dir=out))
        timing.write_text(json.dumps({"wall_s": wall, "cpu_s": cpu}))
    t = json.loads(timing.read_text())
    rows = json.loads((out / "run.json").read_text())["front"]
    k = [(key, frac) for _, key, frac in cfg["targets"]].index(target[1:])
    member = out / rows[k]["dir"]
    assert member.name.startswith(f"{k}_"), member
    return member, {
        "search_s": t["wall_s"],
        "search_cpu_s": t["cpu_s"],
        "one_off_s": t["wall_s"],
        "per_target_s": 0.0,
        "evaluated": 0,
        "front_size": len(rows),
    }


def finetune(search_dir: Path, cfg, runs: Path) -> tuple[float, float, float]:
    from dnas.cli.train import run

    out = runs / f"{_run_name(search_dir)}_train"
    acc, wall, cpu = _timed(
        lambda: run(_compose("train", [*cfg["train"], f"arch={search_dir}"]), output_dir=out)
    )
    return acc, wall, cpu


def _run_name(search_dir: Path) -> str:
    """A unique name for a search run's architecture (a front's member carries its front's)."""
    search_dir = Path(search_dir)
    if search_dir.parent.name == "front":
        return f"{search_dir.parent.parent.name}_{search_dir.name}"
    return search_dir.name


SCRATCH_ORDER = ["dnas", "evolution_predictor", "evolution_direct", "random"]
SCRATCH_PAIRED = SCRATCH_ORDER[:2]  # the head-to-head pair: done first, pair by pair


def scratch_plan(records: list[dict], done: set[str]) -> list[dict]:
    """The records whose architecture is still to be trained from scratch, most useful first:
    the standard budget; the paired methods (``dnas``, APQ's) before the rest; then by seed and
    target, the methods of one target together (so a partial run leaves whole pairs)."""

    def rank(r):
        m = r["method"]
        order = SCRATCH_ORDER.index(m) if m in SCRATCH_ORDER else len(SCRATCH_ORDER)
        budget = r.get("budget", "standard") != "standard"
        paired = m not in SCRATCH_PAIRED
        return (budget, paired, r["seed"], r["target_key"], r["target_frac"], order, m)

    seen, plan = set(done), []
    for r in sorted(records, key=rank):
        if r["run_dir"] not in seen:
            seen.add(r["run_dir"])
            plan.append(r)
    return plan


def arch_source(r: dict, runs: Path) -> Path | None:
    """Where record ``r``'s architecture can be read: its run's ``arch.yaml`` if that survives,
    else one written from the record's own ``arch`` (records since 2026-12-01 carry it), else None
    (older records name only a run directory, and ``bench/runs/`` is not kept between machines)."""
    found = Path(r["run_dir"]) / "arch.yaml"
    if found.is_file():
        return found
    if r.get("arch") is None:
        return None
    from dnas.space import Architecture

    path = runs / f"{_run_name(r['run_dir'])}_arch.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return Architecture.from_dict(r["arch"]).save(path)


def train_scratch(r: dict, source: Path, cfg, runs: Path) -> dict:
    """Train record ``r``'s architecture (read from ``source``, see ``arch_source``) from random
    weights by ``cfg["scratch"]``."""
    from dnas.cli.train import run

    out = runs / f"{_run_name(r['run_dir'])}_scratch"
    overrides = [*cfg["scratch"], f"arch={source}"]
    speed = _speed_s()
    acc, wall, cpu = _timed(lambda: run(_compose("train", overrides), output_dir=out))
    return {
        **{
            k: r.get(k, "standard")
            for k in ("method", "seed", "target_metric", "target_key", "target_frac", "budget")
        },
        "target_value": r["target_value"],
        "latency_ms": r["latency_ms"],
        "energy_mj": r["energy_mj"],
        "finetuned_acc": r["test_acc"],
        "scratch_acc": acc,
        "recipe": cfg["scratch"],
        "train_s": round(wall, 1),
        "train_cpu_s": round(cpu, 1),
        "run_dir": r["run_dir"],
        "train_dir": str(out),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": _machine(),
        "speed_s": speed,  # bench/speed.py, measured just before training
    }


def scratch_summary(scratch: list[dict]) -> str:
    """Mean from-scratch accuracy per method and target (markdown), beside the finetuned one."""
    standard = [r for r in scratch if r.get("budget", "standard") == "standard"]
    targets = sorted({(r["target_key"], r["target_frac"]) for r in standard})
    methods = sorted({r["method"] for r in standard}, key=lambda m: (m not in SCRATCH_ORDER, m))
    head = "| method | " + " | ".join(f"{k} {f}" for k, f in targets)
    head += " |\n|---|" + "---|" * len(targets)
    rows = []
    for m in methods:
        cells = []
        for k, f in targets:
            mine = [
                r for r in standard if (r["method"], r["target_key"], r["target_frac"]) == (m, k, f)
            ]
            if not mine:
                cells.append("—")
                continue
            acc = sum(r["scratch_acc"] for r in mine) / len(mine)
            ft = sum(r["finetuned_acc"] for r in mine) / len(mine)
            cells.append(f"{100 * acc:.2f} % (finetuned {100 * ft:.2f} %, n={len(mine)})")
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join([head, *rows])


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dnas.atomic import atomic_path

    style = {
        "dnas": ("tab:blue", "o"),
        "dnas_front": ("tab:purple", "*"),
        "dnas_every2": ("tab:olive", "P"),
        "dnas_front_every2": ("tab:pink", "*"),
        "dnas_argmax": ("tab:cyan", "x"),
        "evolution_predictor": ("tab:orange", "s"),
        "evolution_direct": ("tab:green", "^"),
        "random": ("tab:gray", "D"),
    }
    metrics = [("latency_ms", "latency (ms)"), ("energy_mj", "energy (mJ)")]
    fig, axes = plt.subplots(1, 2, figsize=(13.5, 4))
    for ax, (metric, label) in zip(axes, metrics):
        recs = [r for r in records if r["target_metric"] == metric]
        for t in sorted({r["target_value"] for r in recs}):
            ax.axvline(t, color="crimson", ls=":", lw=1)
        for method, (color, marker) in style.items():
            for larger in (False, True):  # a larger search budget: hollow, its own legend entry
                pts = [
                    (r[metric], 100 * r["test_acc"])
                    for r in recs
                    if r["method"] == method and (r.get("budget") == "larger") == larger
                ]
                if not pts:
                    continue
                ax.scatter(
                    *zip(*pts),
                    marker=marker,
                    s=60 if larger else 36,
                    label=f"{method} (larger budget)" if larger else method,
                    **(
                        {"facecolors": "none", "edgecolors": color, "linewidths": 1.5}
                        if larger
                        else {"c": color}
                    ),
                )
        ax.set_xlabel(f"exact BitFusion {label}")
        ax.set_ylabel("finetuned test accuracy (%)")
        ax.set_title(f"{metric.split('_')[0]} targets (dotted)")
        ax.grid(alpha=0.3)
    legend = {}  # one legend for both panels, beside them: inside, it hid points
    for ax in axes:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(name, handle)
    fig.legend(legend.values(), legend.keys(), loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.82, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def table(records: list[dict]) -> str:
    """The records as a markdown table (what the README shows)."""
    head = (
        "| method | seed | target | latency (ms) | energy (mJ) | budget used | supernet acc "
        "| finetuned acc | search wall (one-off + per target) | search CPU | measured "
        "| machine step |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for r in sorted(
        records, key=lambda r: (r["target_key"], r["target_frac"], r["method"], r["seed"])
    ):
        unit = "ms" if r["target_metric"] == "latency_ms" else "mJ"
        budget = " (larger budget)" if r.get("budget") == "larger" else ""
        rows.append(
            f"| {r['method']}{budget} | {r['seed']} | {r['target_value']:.4f} {unit} "
            f"({r['target_key']} {r['target_frac']}) | {r['latency_ms']:.4f} | {r['energy_mj']:.4f} "
            f"| {100 * r['budget_used']:.0f} % | {100 * r['supernet_acc']:.2f} % "
            f"| {100 * r['test_acc']:.2f} % | {r['search_s'] / 60:.1f} min "
            f"({r['one_off_s'] / 60:.1f} + {r['per_target_s'] / 60:.1f}) "
            f"| {r['search_cpu_s'] / 60:.1f} min | {r['evaluated']} "
            f"| {_step(r)} |"
        )
    return "\n".join([head, *rows])


def _step(r: dict) -> str:
    """A record's machine speed figure (``speed_s``; records before 2026-12-01 have none)."""
    return f"{1000 * r['speed_s']:.0f} ms" if r.get("speed_s") else "-"


def _run_record(path) -> dict:
    f = Path(path) / "run.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def _front_cpu(method: str, mine: list[dict]) -> float:
    """CPU seconds of one seed's whole front: one-off work once, plus each target's own."""
    if method in FRONT_ARGS:
        return mine[0]["search_cpu_s"]
    if method in (*DNAS_ARGS, "dnas_argmax"):
        return sum(r["search_cpu_s"] for r in mine)
    per_target = 0.0
    for r in mine:
        run = _run_record(r["run_dir"])
        per_target += run["search_cpu_s"] - run.get("supernet_cpu_s", 0.0)
        per_target -= run.get("predictor_data_cpu_s", 0.0)
    first = mine[0]
    one_off = _run_record(Path(first["one_off_supernet"]).parent).get("supernet_cpu_s", 0.0)
    if method == "evolution_predictor":
        pdata = _run_record(Path(first["one_off_pdata"]).parent)
        one_off += pdata.get("predictor_data_cpu_s", 0.0)
    return one_off + per_target


def summary(records: list[dict]) -> str:
    """Mean finetuned accuracy per method and target (over seeds), and what each method's whole
    front cost: one-off work once per seed plus every target's own work (markdown)."""
    standard = [r for r in records if r.get("budget", "standard") == "standard"]
    targets = sorted({(r["target_key"], r["target_frac"]) for r in standard})
    methods = [
        m
        for m in (*DNAS_ARGS, *FRONT_ARGS, *EVOLVE_ARGS, "dnas_argmax")
        if any(r["method"] == m for r in standard)
    ]
    head = "| method | " + " | ".join(f"{k} {f}" for k, f in targets)
    head += " | front cost: wall (CPU), per seed |\n|---|" + "---|" * (len(targets) + 1)
    rows = []
    for m in methods:
        cells = []
        for k, f in targets:
            accs = [
                r["test_acc"]
                for r in standard
                if (r["method"], r["target_key"], r["target_frac"]) == (m, k, f)
            ]
            cells.append(f"{100 * sum(accs) / len(accs):.2f} % (n={len(accs)})" if accs else "—")
        costs = []
        for seed in sorted({r["seed"] for r in standard if r["method"] == m}):
            mine = [r for r in standard if r["method"] == m and r["seed"] == seed]
            if len(mine) < len(targets):
                continue  # a front not yet complete for this seed
            wall = max(r["one_off_s"] for r in mine) + sum(r["per_target_s"] for r in mine)
            cpu = _front_cpu(m, mine)
            costs.append(f"s{seed}: {wall / 60:.0f} min ({cpu / 60:.0f})")
        rows.append(f"| {m} | " + " | ".join(cells) + f" | {'; '.join(costs) or '—'} |")
    return "\n".join([head, *rows])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="differentiable search vs APQ's evolution vs random")
    p.add_argument("--quick", action="store_true", help="one target, small data (< 5 min)")
    p.add_argument("--plot", action="store_true", help="only redraw the plot from the records")
    p.add_argument("--table", action="store_true", help="only print the records as markdown")
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated subset of methods to run now (default: all); the rest stay planned",
    )
    p.add_argument("--seeds", default=None, help="comma-separated subset of seeds to run now")
    p.add_argument(
        "--budgets",
        default=None,
        help="comma-separated subset of search budgets to run now: standard, larger",
    )
    p.add_argument(
        "--scratch",
        action="store_true",
        help="train every recorded architecture from random weights by one recipe "
        "(bench/results/search_scratch.json; --methods/--seeds/--budgets filter it)",
    )
    args = p.parse_args(argv)
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before Lightning imports triton (CPU)
    cfg = QUICK if args.quick else FULL
    path = RESULTS / ("search_quick.json" if args.quick else "search.json")
    runs = ROOT / "runs" / ("search_quick" if args.quick else "search")
    figure = (
        ROOT.parent
        / "docs"
        / ("search_vs_evolution_quick.png" if args.quick else "search_vs_evolution.png")
    )
    records = _load(path)
    if args.plot:
        plot(records, figure)
        return 0
    scratch_path = RESULTS / ("search_scratch_quick.json" if args.quick else "search_scratch.json")
    if args.table:
        print(table(records))
        print()
        print(summary(records))
        if _load(scratch_path):
            print()
            print(scratch_summary(_load(scratch_path)))
        return 0
    from dnas.space import Architecture

    done = {
        (r["method"], r["seed"], r["target_key"], r["target_frac"], r.get("budget", "standard"))
        for r in records
    }
    oneoff = surviving_oneoff(records)
    plan = [(t, m, s, "standard") for t in cfg["targets"] for m, s in cfg["runs"]]
    if "larger" in cfg:
        plan += [(cfg["larger"]["target"], m, 0, "larger") for m in ["dnas", *EVOLVE_ARGS]]
    only = set(args.methods.split(",")) if args.methods else None
    methods = [*DNAS_ARGS, *FRONT_ARGS, *EVOLVE_ARGS]
    unknown = (only or set()) - set(methods)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}; choose from {methods}")
    budgets = set(args.budgets.split(",")) if args.budgets else None
    if budgets and budgets - {"standard", "larger"}:
        p.error(
            f"unknown budgets {sorted(budgets - {'standard', 'larger'})}; choose from standard, larger"
        )
    if args.scratch:
        seeds = {int(x) for x in args.seeds.split(",")} if args.seeds is not None else None
        todo = [
            r
            for r in scratch_plan(records, {r["run_dir"] for r in _load(scratch_path)})
            if (not only or r["method"] in only)
            and (seeds is None or r["seed"] in seeds)
            and (not budgets or r.get("budget", "standard") in budgets)
        ]
        sources = [(r, arch_source(r, runs)) for r in todo]
        lost = [r for r, source in sources if source is None]
        todo = [(r, source) for r, source in sources if source is not None]
        print(f"{len(todo)} architectures to train from scratch", file=sys.stderr, flush=True)
        if lost:
            print(
                f"skipped {len(lost)} whose architecture is lost (no {lost[0]['run_dir']}/arch.yaml "
                "and none in the record: rerun their search to train them)",
                file=sys.stderr,
                flush=True,
            )
        for r, source in todo:
            print(
                f"== scratch: {r['method']} seed {r['seed']} {r['target_key']}={r['target_frac']}",
                file=sys.stderr,
                flush=True,
            )
            rec = train_scratch(r, source, cfg, runs)
            _save(scratch_path, [*_load(scratch_path), rec])
            print(json.dumps(rec), flush=True)
        return 0
    for target, method, seed, budget in plan:
        metric, key, frac = target
        if (method, seed, key, frac, budget) in done or (only and method not in only):
            continue
        if args.seeds is not None and seed not in {int(x) for x in args.seeds.split(",")}:
            continue
        if budgets and budget not in budgets:
            continue
        load_before = os.getloadavg()[0]
        print(f"== {method} seed {seed} {key}={frac} ({budget})", file=sys.stderr, flush=True)
        speed = _speed_s()
        extra = cfg["larger"][method] if budget == "larger" else None
        out, costs = search_one(method, seed, target, cfg, runs, oneoff, extra)
        acc, ft_wall, ft_cpu = finetune(out, cfg, runs)
        arch = Architecture.load(out / "arch.yaml")
        m = arch.metrics
        shared = oneoff.get(seed, {})
        rec = {
            "method": method,
            "target_metric": metric,
            "target_value": m[f"target_{metric}"],
            "target_key": key,
            "target_frac": frac,
            "seed": seed,
            "budget": budget,
            "extra_overrides": extra or [],
            "test_acc": acc,
            "supernet_acc": m["test_acc"],
            "latency_ms": m["latency_ms"],
            "energy_mj": m["energy_mj"],
            "budget_used": m[metric] / m[f"target_{metric}"],
            **{k: round(v, 2) if isinstance(v, float) else v for k, v in costs.items()},
            "finetune_s": round(ft_wall, 1),
            "finetune_cpu_s": round(ft_cpu, 1),
            **{
                f"one_off_{k}": shared.get(k)
                for k in ("supernet", "supernet_s", "pdata", "pdata_s")
            },
            "run_dir": str(out),
            # the architecture itself: bench/runs/ is not kept, and --scratch retrains from this
            "arch": arch.to_dict(),
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": _machine(),
            "speed_s": speed,  # bench/speed.py, measured just before the run
            # 1-minute load average before and after: ~1-2 is this run alone on 2 cores; more
            # means something else shared the machine (compare on CPU time then)
            "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2),
            "quick": args.quick,
        }
        records = [*_load(path), rec]
        _save(path, records)
        plot(records, figure)
        print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
