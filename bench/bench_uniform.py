"""Does the search beat the network a practitioner builds by hand? Every method trained from scratch.

The hand-designed network (``dnas-uniform``): one bit-width for every searchable conv, one kernel,
full or one-block-shorter-per-stage depth, every block as wide as fits; the candidates of a target
are each trained once (training seed 0) and the best on the validation split is "the" baseline.
Against it, at tight to loose targets: the default ``dnas-search`` (search seeds 0 and 1), the
default front (one ``front=[...]`` search for every target, seed 0), APQ's evolution with its
predictor (``dnas-evolve experiment=compare``, seed 0) and any variant listed in ``VARIANTS``.
Every architecture is trained from random weights by one recipe (``RECIPE``: ``dnas-train
init=scratch``, 4 epochs) with training seeds 0, 1, 2 and tested on the Fashion-MNIST test set;
the finetune from each search's own supernet (2 epochs) is recorded beside, second.

The work is a queue of units (a search, one training); a unit's result is appended to
``bench/results/uniform.json`` the moment it ends, and a rerun skips what is recorded, so the
benchmark spans sessions. Several workers may run at once (``--worker``): each claims a unit with
a file under ``bench/runs/uniform/claims/`` and runs torch on one thread, as two 2-thread torch
processes on this 2-core machine slow each other far more than 2x.

    python bench/bench_uniform.py --plan               # what is done, what is left, estimated time
    python bench/bench_uniform.py --worker &           # run units until none is left (or --hours)
    python bench/bench_uniform.py --worker --only uniform,apq   # only some methods' units
    python bench/bench_uniform.py --table              # the README's tables from the records
    python bench/bench_uniform.py --plot               # docs/uniform.png from the records
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
RESULTS = ROOT / "results" / "uniform.json"
RUNS = ROOT / "runs" / "uniform"
FIGURE = REPO / "docs" / "uniform.png"

TARGETS = [
    ("latency_ms", "latency_frac", 0.05),
    ("latency_ms", "latency_frac", 0.1),
    ("latency_ms", "latency_frac", 0.15),
    ("latency_ms", "latency_frac", 0.3),
    ("energy_mj", "energy_frac", 0.15),
    ("energy_mj", "energy_frac", 0.3),
]
TRAIN_SEEDS = (0, 1, 2)
# 2-bit candidates are trained only where they were first measured: at latency_frac 0.05 and 0.1
# they reached 50.4 %, 73.9 % and 72.8 % test accuracy (seed 0), far below the 8-bit candidates
# (89.1 % at 0.05), and a 2-bit training took 2-3x the time of an 8-bit one here. They stay in
# ``dnas-uniform``; a target outside this set leaves them out of its choice.
TWO_BIT_TARGETS = {"latency_frac0.05", "latency_frac0.1"}
RECIPE = ["init=scratch", "trainer.max_epochs=4"]  # bench_search.py --scratch's recipe
FINETUNE = ["trainer.max_epochs=2"]  # bench_search.py's finetune from the search's own supernet
# Search methods: (kind, overrides, search seeds). ``dnas`` is dnas-search on its defaults.
METHODS: dict[str, tuple[str, list[str], tuple[int, ...]]] = {
    "dnas": ("search", [], (0, 1)),
    "dnas_front": ("front", [], (0,)),
    "apq": ("evolve", ["experiment=compare", "algorithm=evolution", "fitness=predictor"], (0,)),
}
# Search variants measured against the default (the "improve the search" work), added here
# with their overrides as they are tried.
VARIANTS: dict[str, tuple[str, list[str], tuple[int, ...]]] = {
    # the bit relaxation over the levels whose cost differs on BitFusion only (2, 4, 8)
    "dnas_levels": ("search", ["search.bit_levels=hardware"], (0, 1)),
    # a second warm-up epoch (uniform sampling) before the architecture steps, same total epochs
    "dnas_warm2": ("search", ["search.warmup_epochs=2"], (0,)),
    # weight steps on uniformly drawn paths all search long (SPOS / FairNAS), arch steps as before
    "dnas_fair": ("search", ["search.weight_paths=uniform"], (0,)),
    # one depthwise weight per kernel size (FBNet) instead of centre crops of one weight
    "dnas_sep": ("search", ["search.kernel_weights=separate"], (0,)),
    # both: the bit levels and one weight per kernel size
    "dnas_levels_sep": (
        "search",
        ["search.bit_levels=hardware", "search.kernel_weights=separate"],
        (0, 1),
    ),
    # twice the search: 12 epochs, 2 of them warm-up (the supernet's own accuracy, 81-86 %, is
    # far below the ~90 % its networks reach trained alone: is it ranking choices undertrained?)
    "dnas_long": ("search", ["trainer.max_epochs=12", "search.warmup_epochs=2"], (0,)),
    # ``rederive``: [base method, derive_depth]: the base search's distribution derived again
    "dnas_marginal": ("rederive", ["dnas", "marginal"], (0, 1)),
}


def _key(t) -> str:
    return f"{t[1]}{t[2]}"


def _rel(path: Path) -> str:
    return os.path.relpath(path, REPO)


def _compose(name: str, overrides: list[str]):
    from hydra import compose, initialize_config_module

    with initialize_config_module("dnas.conf", version_base="1.3"):
        return compose(name, overrides=overrides, return_hydra_config=True)


def _load() -> list[dict]:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else []


def _append(rec: dict) -> None:
    """Append one record under an exclusive lock (workers share the file)."""
    import fcntl

    from dnas.atomic import atomic_path

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        records = [*_load(), rec]
        with atomic_path(RESULTS) as tmp:
            tmp.write_text(json.dumps(records, indent=1) + "\n")


def _machine() -> dict:
    import platform

    import torch

    return {
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def _target_fields(t) -> dict:
    return {"target_metric": t[0], "target_key": t[1], "target_frac": t[2]}


# ----------------------------------------------------------------------------------- the queue
def all_methods() -> dict:
    return {**METHODS, **VARIANTS}


@functools.cache
def uniform_candidates_of(t) -> list:
    """The pruned uniform candidates of target ``t`` (``dnas-uniform``'s defaults)."""
    from omegaconf import OmegaConf

    from dnas.cost.exact import ExactCost
    from dnas.cost.hardware import BitFusionConfig
    from dnas.cost.table import load_or_build
    from dnas.cost.targets import resolve_targets
    from dnas.evolve.uniform import default_levels, prune_dominated, uniform_candidates
    from dnas.space import SearchSpace

    cfg = _compose("uniform", [])
    hw = BitFusionConfig.from_dict(OmegaConf.to_container(cfg.hardware, resolve=True))
    space = SearchSpace.from_dict(OmegaConf.to_container(cfg.space, resolve=True))
    table, _, _ = load_or_build(space, hw, None, "auto")
    targets = resolve_targets({t[1]: t[2]}, table.extremes(space))
    levels = default_levels(space, hw.pmax_bits, hw.pmin_bits, targets.active())
    found, _ = uniform_candidates(
        space,
        ExactCost(space, table),
        targets,
        levels,
        list(cfg.uniform.kernels),
        list(cfg.uniform.depths),
    )
    kept, _ = prune_dominated(found)
    if _key(t) not in TWO_BIT_TARGETS:
        kept = [c for c in kept if c.bits != 2]
    return [
        (
            c,
            c.arch(space)
            .with_metrics(**c.cost, **{f"target_{m}": v for m, v in targets.active().items()})
            .priced_by(table.header.content_hash),
        )
        for c in kept
    ]


def plan(
    records: list[dict],
    only: set[str] | None = None,
    targets: set[str] | None = None,
    kinds: set[str] | None = None,
) -> list[tuple]:
    """Every unit in the order workers take them, with what it needs done first.

    Units: ``("uniform", target, candidate, seed)``, ``("search", method, seed, target)`` (a
    front and APQ search every target in one run: ``_search_unit_of``), ``("train", method,
    search_seed, target, train_seed)`` and ``("finetune", method, search_seed, target)``.
    """
    units: list[tuple] = []
    for t in TARGETS:  # 1. every uniform candidate once (seed 0), then the chosen one twice more
        units += [("uniform", _key(t), c.name, 0) for c, _ in uniform_candidates_of(t)]
    for t in TARGETS:
        units += [("uniform", _key(t), "chosen", s) for s in TRAIN_SEEDS[1:]]
    for name, (_, _, seeds) in all_methods().items():  # 2. searches and their trainings
        for s in seeds:
            units += [("search", name, s, _key(t)) for t in TARGETS]
            for t in TARGETS:
                units += [("train", name, s, _key(t), ts) for ts in TRAIN_SEEDS]
    for name, (_, _, seeds) in all_methods().items():  # 3. the finetunes, second
        units += [("finetune", name, s, _key(t)) for s in seeds for t in TARGETS]
    if only:
        units = [u for u in units if _method_of(u) in only]
    if targets:
        units = [u for u in units if _target_of(u) in targets]
    if kinds:
        units = [u for u in units if u[0] in kinds]
    done = {tuple(r["unit"]) for r in records}
    return [u for u in units if u not in done]


def _target_of(unit) -> str | None:
    return unit[1] if unit[0] == "uniform" else unit[3]


def _method_of(unit) -> str:
    return "uniform" if unit[0] == "uniform" else unit[1]


def _search_record(records, method, seed, key) -> dict | None:
    for r in records:
        if (
            r["kind"] == "search"
            and r["method"] == method
            and r["search_seed"] == seed
            and r["target_key"] + str(r["target_frac"]) == key
        ):
            return r
    return None


def _chosen_uniform(records, key) -> dict | None:
    """The uniform candidate of target ``key`` with the best validation accuracy, once every
    candidate is trained (None before)."""
    t = next(t for t in TARGETS if _key(t) == key)
    names = [c.name for c, _ in uniform_candidates_of(t)]
    mine = {
        r["candidate"]: r
        for r in records
        if r["kind"] == "train"
        and r["method"] == "uniform"
        and r["train_seed"] == 0
        and r["target_key"] + str(r["target_frac"]) == key
    }
    if set(names) - set(mine):
        return None
    return max((mine[n] for n in names), key=lambda r: r["val_acc"])  # first of equals


def ready(unit, records) -> bool:
    """Whether what ``unit`` needs is recorded."""
    if unit[0] == "uniform":
        return unit[2] != "chosen" or _chosen_uniform(records, unit[1]) is not None
    if unit[0] == "search":
        kind, args, _ = all_methods()[unit[1]]
        return kind != "rederive" or _search_record(records, args[0], unit[2], unit[3]) is not None
    method, seed, key = unit[1], unit[2], unit[3]
    return _search_record(records, method, seed, key) is not None


# ------------------------------------------------------------------------------- running units
def _train(arch_yaml: Path, out: Path, overrides: list[str]) -> dict:
    from dnas.cli.train import run
    from dnas.space import Architecture

    t0, c0 = time.perf_counter(), time.process_time()
    last = out / "checkpoints" / "last.ckpt"
    resume = [f"ckpt_path={last}"] if last.is_file() else []
    run(_compose("train", [*overrides, f"arch={arch_yaml}", *resume]), output_dir=out)
    m = Architecture.load(out / "arch.yaml").metrics
    return {
        "val_acc": m["val_acc"],
        "test_acc": m["test_acc"],
        "latency_ms": m["latency_ms"],
        "energy_mj": m["energy_mj"],
        "train_s": round(time.perf_counter() - t0, 1),
        "train_cpu_s": round(time.process_time() - c0, 1),
        "resumed": bool(resume),
    }


TRAINED_FIELDS = (
    "val_acc",
    "test_acc",
    "latency_ms",
    "energy_mj",
    "train_s",
    "train_cpu_s",
    "resumed",
)


def _choices(arch: dict) -> dict:
    return {k: v for k, v in arch.items() if k not in ("metrics", "table_hash")}


def _same_training(records: list[dict], arch: dict, seed: int) -> dict | None:
    """A recorded from-scratch training of the same network with the same seed (a rederived
    network that equals its base search's is trained once)."""
    for r in records:
        if (
            r["kind"] == "train"
            and r.get("recipe") == RECIPE
            and r["train_seed"] == seed
            and "same_as" not in r
            and _choices(r["arch"]) == _choices(arch)
        ):
            return r
    return None


def _budget_used(t, m: dict) -> float:
    return m[t[0]] / m[f"target_{t[0]}"]


def run_unit(unit, records) -> dict:
    from dnas.space import Architecture

    base = {"unit": list(unit), "date": time.strftime("%Y-%m-%d %H:%M"), "machine": _machine()}
    if unit[0] == "uniform":
        key, name, seed = unit[1:]
        t = next(t for t in TARGETS if _key(t) == key)
        if name == "chosen":
            chosen = _chosen_uniform(records, key)
            name, arch = chosen["candidate"], Architecture.from_dict(chosen["arch"])
        else:
            arch = dict((c.name, a) for c, a in uniform_candidates_of(t))[name]
        out = RUNS / f"uniform_{key}_{name}_t{seed}"
        arch_yaml = arch.save(RUNS / f"uniform_{key}_{name}.yaml")
        got = _train(arch_yaml, out, [*RECIPE, f"seed={seed}"])
        return {
            **base,
            "kind": "train",
            "method": "uniform",
            "candidate": name,
            "search_seed": 0,
            "train_seed": seed,
            **_target_fields(t),
            "target_value": arch.metrics[f"target_{t[0]}"],
            "budget_used": got[t[0]] / arch.metrics[f"target_{t[0]}"],
            "arch": arch.to_dict(),
            "recipe": RECIPE,
            "run_dir": _rel(out),
            **got,
        }
    if unit[0] == "search":
        return _run_search(unit, base)
    method, seed, key = unit[1], unit[2], unit[3]
    t = next(t for t in TARGETS if _key(t) == key)
    s = _search_record(records, method, seed, key)
    arch = Architecture.from_dict(s["arch"])
    name = f"{method}_s{seed}_{key}"
    arch_yaml = arch.save(RUNS / f"{name}.yaml")
    if unit[0] == "train":
        ts = unit[4]
        twin = _same_training(records, s["arch"], ts)
        if twin is not None:  # the same network by the same recipe and seed: the same run
            got = {k: twin[k] for k in TRAINED_FIELDS}
            extra = {"train_seed": ts, "recipe": RECIPE, "same_as": twin["unit"]}
        else:
            got = _train(arch_yaml, RUNS / f"{name}_t{ts}", [*RECIPE, f"seed={ts}"])
            extra = {"train_seed": ts, "recipe": RECIPE}
    else:  # finetune from the search's own supernet, if its run directory survives
        supernet = REPO / s.get("derived_from", s["run_dir"]) / "supernet.pt"
        if not supernet.is_file():
            raise RuntimeError(f"{supernet} is gone: rerun the search to finetune")
        got = _train(arch_yaml, RUNS / f"{name}_ft", [*FINETUNE, f"init={supernet}", "seed=0"])
        extra = {"train_seed": 0, "recipe": FINETUNE}
    return {
        **base,
        "kind": unit[0],
        "method": method,
        "candidate": None,
        "search_seed": seed,
        **_target_fields(t),
        "target_value": s["target_value"],
        "budget_used": got[t[0]] / s["target_value"],
        "arch": s["arch"],
        "run_dir": _rel(RUNS / f"{name}_t{unit[4]}" if unit[0] == "train" else RUNS / f"{name}_ft"),
        **extra,
        **got,
    }


def _search_rec(base, method, seed, t, arch_yaml: Path, wall, cpu, **more) -> dict:
    from dnas.space import Architecture

    arch = Architecture.load(arch_yaml)
    m = arch.metrics
    return {
        **base,
        "kind": "search",
        "method": method,
        "search_seed": seed,
        **_target_fields(t),
        "target_value": m[f"target_{t[0]}"],
        "latency_ms": m["latency_ms"],
        "energy_mj": m["energy_mj"],
        "budget_used": _budget_used(t, m),
        "supernet_acc": m.get("test_acc"),
        "arch": arch.to_dict(),
        "run_dir": _rel(arch_yaml.parent),
        "search_s": round(wall, 1),
        "search_cpu_s": round(cpu, 1),
        **more,
    }


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def _run_search(unit, base) -> list[dict]:
    """One search unit; returns its records (one per target it searched)."""
    _, method, seed, key = unit
    kind, overrides, _ = all_methods()[method]
    if kind == "rederive":  # another derivation of a recorded search's distribution
        from dnas.derive.rederive import rederive

        t = next(t for t in TARGETS if _key(t) == key)
        src = _search_record(_load(), overrides[0], seed, key)
        out = RUNS / f"{method}_s{seed}_{key}"
        out.mkdir(parents=True, exist_ok=True)
        wall, cpu = _timed(
            lambda: rederive(REPO / src["run_dir"], depth=overrides[1])[0].save(out / "arch.yaml")
        )
        rec = _search_rec(base, method, seed, t, out / "arch.yaml", wall, cpu)
        return [{**rec, "derived_from": src["run_dir"], "supernet_acc": None}]
    common = [*overrides, f"seed={seed}", "threads=1"]
    if kind == "search":
        from dnas.cli.search import run

        t = next(t for t in TARGETS if _key(t) == key)
        out = RUNS / f"{method}_s{seed}_{key}"
        last = out / "checkpoints" / "last.ckpt"  # a search cut short resumes where it stopped
        resume = [f"ckpt_path={last}"] if last.is_file() else []
        ov = [*common, "target.latency_frac=null", f"target.{t[1]}={t[2]}", *resume]
        wall, cpu = _timed(lambda: run(_compose("search", ov), output_dir=out))
        rec = _search_rec(base, method, seed, t, out / "arch.yaml", wall, cpu)
        return [{**rec, "resumed": bool(resume)}]
    if kind == "front":
        from dnas.cli.search import run

        out = RUNS / f"{method}_s{seed}"
        spec = ",".join("{" + f"{k}:{f}" + "}" for _, k, f in TARGETS)
        wall, cpu = _timed(
            lambda: run(_compose("search", [*common, f"front=[{spec}]"]), output_dir=out)
        )
        rows = json.loads((out / "run.json").read_text())["front"]
        return [
            {
                **_search_rec(base, method, seed, t, out / row["dir"] / "arch.yaml", wall, cpu),
                "unit": [*unit[:3], _key(t)],
                "front_unit": list(unit),
            }
            for t, row in zip(TARGETS, rows)
        ]
    from dnas.cli.evolve import run

    recs, shared = [], []
    wall_all = cpu_all = 0.0
    for t in TARGETS:
        out = RUNS / f"{method}_s{seed}_{_key(t)}"
        ov = [*common[:-1], "target.latency_frac=null", f"target.{t[1]}={t[2]}", *shared]
        wall, cpu = _timed(lambda ov=ov, out=out: run(_compose("evolve", ov), output_dir=out))
        wall_all, cpu_all = wall_all + wall, cpu_all + cpu
        if not shared:  # the uniform supernet and predictor data do not depend on the target
            shared = [
                f"supernet={out / 'supernet.pt'}",
                f"predictor.data={out / 'predictor_data.csv'}",
            ]
        recs.append(
            {
                **_search_rec(base, method, seed, t, out / "arch.yaml", wall, cpu),
                "unit": [*unit[:3], _key(t)],
                "front_unit": list(unit),
            }
        )
    for r in recs:
        r.update(front_search_s=round(wall_all, 1), front_search_cpu_s=round(cpu_all, 1))
    return recs


class Claims:
    """Which worker runs which unit: a file per unit, created exclusively; a claim whose worker
    died (its pid is gone) is taken over."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, unit) -> Path:
        return self.root / ("_".join(str(x) for x in unit) + ".claim")

    def take(self, unit) -> bool:
        path = self._path(unit)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(path.read_text() or 0)
                    os.kill(pid, 0)
                    return False  # its worker lives
                except (ValueError, ProcessLookupError, FileNotFoundError):
                    path.unlink(missing_ok=True)
                    continue
                except PermissionError:
                    return False
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return True
        return False

    def release(self, unit) -> None:
        self._path(unit).unlink(missing_ok=True)


def _search_unit_of(unit):
    """The search unit a ``search`` record's unit belongs to (a front's and APQ's cover all)."""
    kind = all_methods()[unit[1]][0]
    return unit if kind in ("search", "rederive") else (*unit[:3], None)


def worker(
    only: set[str] | None,
    hours: float | None,
    targets: set[str] | None = None,
    kinds: set[str] | None = None,
) -> int:
    import torch

    torch.set_num_threads(1)
    claims = Claims(RUNS / "claims")
    stop_at = time.time() + 3600 * hours if hours else math.inf
    while time.time() < stop_at:
        records = _load()
        todo = plan(records, only, targets, kinds)
        todo = list(dict.fromkeys(_search_unit_of(u) if u[0] == "search" else u for u in todo))
        picked = None
        for u in todo:
            if ready(u, records) and claims.take(u):
                picked = u
                break
        if picked is None:
            if not todo:
                print("worker: nothing left", file=sys.stderr, flush=True)
                return 0
            time.sleep(60)  # waiting for another worker's search
            continue
        print(f"== {picked}", file=sys.stderr, flush=True)
        try:
            got = run_unit(picked, _load())
            for rec in got if isinstance(got, list) else [got]:
                _append(rec)
                print(json.dumps({k: v for k, v in rec.items() if k != "arch"}), flush=True)
        finally:
            claims.release(picked)
    return 0


# --------------------------------------------------------------------------------- reporting
def _stats(xs: list[float]) -> str:
    if not xs:
        return "—"
    mean = 100 * statistics.fmean(xs)
    if len(xs) == 1:
        return f"{mean:.2f} (n=1)"
    return f"{mean:.2f} ± {100 * statistics.stdev(xs):.2f} (n={len(xs)})"


def summary(records: list[dict]) -> str:
    """Per target: the best uniform network, each method's from-scratch mean ± std over training
    seeds (and search seeds), the budget used, the finetuned accuracy beside (markdown)."""
    out = []
    for t in TARGETS:
        key = _key(t)
        mine = [r for r in records if r["target_key"] + str(r["target_frac"]) == key]
        if not mine:
            continue
        chosen = _chosen_uniform(records, key)
        unit = "ms" if t[0] == "latency_ms" else "mJ"
        value = next((r["target_value"] for r in mine), float("nan"))
        full8 = _fits_full8(t)
        out.append(
            f"\n**{t[1]} {t[2]}** ({value:.4f} {unit}; the all-8-bit widest network "
            + ("fits" if full8 else "does not fit")
            + ")\n\n| method | architecture | from scratch: test acc (%) | vs uniform (points) "
            "| budget used | finetuned (%) |\n|---|---|---|---|---|---|"
        )
        rows = []
        base = None
        if chosen is not None:
            accs = [
                r["test_acc"]
                for r in mine
                if r["kind"] == "train"
                and r["method"] == "uniform"
                and r["candidate"] == chosen["candidate"]
            ]
            base = statistics.fmean(accs)
            rows.append(
                f"| uniform (best on validation) | {chosen['candidate']} | {_stats(accs)} | — "
                f"| {100 * chosen['budget_used']:.0f} % | — |"
            )
        for name in all_methods():
            accs = [r["test_acc"] for r in mine if r["kind"] == "train" and r["method"] == name]
            if not accs:
                continue
            searches = [r for r in mine if r["kind"] == "search" and r["method"] == name]
            ft = [r["test_acc"] for r in mine if r["kind"] == "finetune" and r["method"] == name]
            used = ", ".join(f"{100 * r['budget_used']:.0f} %" for r in searches)
            delta = "—" if base is None else f"{100 * (statistics.fmean(accs) - base):+.2f}"
            rows.append(
                f"| {name} | {len(searches)} search(es) | {_stats(accs)} | {delta} | {used} "
                f"| {_stats(ft) if ft else '—'} |"
            )
        out += rows or ["| (nothing trained yet) | | | | | |"]
        names = [c.name for c, _ in uniform_candidates_of(t)]
        seed0 = {
            r["candidate"]: r
            for r in mine
            if r["kind"] == "train" and r["method"] == "uniform" and r["train_seed"] == 0
        }
        if seed0:
            listed = ", ".join(
                f"{n} {100 * seed0[n]['test_acc']:.2f} ({100 * seed0[n]['val_acc']:.2f})"
                if n in seed0
                else f"{n} —"
                for n in names
            )
            out.append(
                f"\nUniform candidates, seed 0, test (validation) %: {listed}"
                + ("" if chosen is not None else "; the choice waits for the others")
                + "."
            )
    return "\n".join(out)


@functools.cache
def _fits_full8(t) -> bool:
    from omegaconf import OmegaConf

    from dnas.cost.exact import ExactCost
    from dnas.cost.hardware import BitFusionConfig
    from dnas.cost.table import load_or_build
    from dnas.cost.targets import resolve_targets
    from dnas.evolve.uniform import uniform_state
    from dnas.space import SearchSpace

    cfg = _compose("uniform", [])
    hw = BitFusionConfig.from_dict(OmegaConf.to_container(cfg.hardware, resolve=True))
    space = SearchSpace.from_dict(OmegaConf.to_container(cfg.space, resolve=True))
    table, _, _ = load_or_build(space, hw, None, "auto")
    targets = resolve_targets({t[1]: t[2]}, table.extremes(space))
    return targets.fits(ExactCost(space, table).total(uniform_state(space, 8, 3, "full", 1.0)))


def plot(records: list[dict], path: Path) -> None:
    """Accuracy from scratch against exact cost: every uniform candidate (seed 0) as a line per
    bit-width and depth, each method's networks (mean over training seeds) as markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dnas.atomic import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(13.5, 4.2))
    markers = {
        "dnas": ("tab:blue", "o"),
        "dnas_front": ("tab:purple", "*"),
        "apq": ("tab:orange", "s"),
    }
    extra = iter(["tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"])
    bit_colors = {2: "0.6", 4: "tab:orange", 6: "tab:olive", 8: "tab:green"}
    floor = 85.0  # 2-bit candidates (50-74 %) are noted, not drawn: they would squash the rest
    for ax, (metric, label) in zip(
        axes, [("latency_ms", "latency (ms)"), ("energy_mj", "energy (mJ)")]
    ):
        recs = [r for r in records if r.get("target_metric") == metric and r["kind"] == "train"]
        for v in sorted({r["target_value"] for r in recs}):
            ax.axvline(v, color="crimson", ls=":", lw=1)
        uni = [r for r in recs if r["method"] == "uniform" and r["train_seed"] == 0]
        groups = sorted(
            {(r["arch"]["blocks"][0]["dw"]["w_bits"], "short" in r["candidate"]) for r in uni}
        )
        below: list[str] = []
        for bits, short in groups:
            pts = sorted(
                (r[metric], 100 * r["test_acc"])
                for r in uni
                if r["candidate"].startswith(f"b{bits}_") and ("short" in r["candidate"]) == short
            )
            low = [p for p in pts if p[1] < floor]
            pts = [p for p in pts if p[1] >= floor]
            below += [f"{bits}-bit{' short' if short else ''} {a:.0f} %" for _, a in low]
            if not pts:
                continue
            ax.plot(
                *zip(*pts),
                "--" if short else "-",
                marker=".",
                alpha=0.7,
                color=bit_colors.get(bits),
                label=f"uniform {bits}-bit{', one block fewer per stage' if short else ''} (seed 0)",
            )
        for name in all_methods():
            by_arch: dict = {}
            for r in recs:
                if r["method"] == name:
                    by_arch.setdefault(
                        (r["search_seed"], r["target_key"], r["target_frac"]), []
                    ).append(r)
            if not by_arch:
                continue
            color, marker = markers.get(name) or (next(extra, "k"), "P")
            xs = [rs[0][metric] for rs in by_arch.values()]
            ys = [100 * statistics.fmean(r["test_acc"] for r in rs) for rs in by_arch.values()]
            ax.scatter(
                xs, ys, c=color, marker=marker, s=50, zorder=3, label=f"{name} (mean of seeds)"
            )
        ax.set_xlabel(f"exact BitFusion {label}")
        ax.set_ylabel("test accuracy from scratch (%)")
        ax.grid(alpha=0.3)
        if below:
            ax.text(
                0.01,
                0.01,
                "below the axis: " + ", ".join(below),
                transform=ax.transAxes,
                fontsize=7,
                color="0.4",
            )
        if recs:
            ax.set_ylim(bottom=floor)
        else:
            ax.text(
                0.5,
                0.5,
                f"no {label.split()[0]} target trained yet",
                ha="center",
                transform=ax.transAxes,
                color="0.4",
            )
    legend = {}
    for ax in axes:
        for h, n in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(n, h)
    if legend:
        fig.legend(legend.values(), legend.keys(), loc="center right", fontsize=7)
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the search against the hand-designed network")
    p.add_argument("--worker", action="store_true", help="run units until none is left")
    p.add_argument("--only", default=None, help="comma-separated methods (uniform, dnas, ...)")
    p.add_argument("--hours", type=float, default=None, help="stop taking units after this long")
    p.add_argument(
        "--kinds",
        default=None,
        help="comma-separated unit kinds (uniform, search, train, finetune)",
    )
    p.add_argument(
        "--targets",
        default=None,
        help="comma-separated targets (latency_frac0.1, ...); all if unset",
    )
    p.add_argument("--plan", action="store_true", help="list the units left")
    p.add_argument("--table", action="store_true", help="print the README tables")
    p.add_argument("--plot", action="store_true", help=f"draw {_rel(FIGURE)}")
    args = p.parse_args(argv)
    os.environ.setdefault("TRITON_INTERPRET", "1")
    only = set(args.only.split(",")) if args.only else None
    known = {"uniform", *all_methods()}
    if only and only - known:
        p.error(f"unknown methods {sorted(only - known)}; choose from {sorted(known)}")
    targets = set(args.targets.split(",")) if args.targets else None
    if targets and targets - {_key(t) for t in TARGETS}:
        p.error(f"unknown targets {sorted(targets - {_key(t) for t in TARGETS})}")
    records = _load()
    if args.plan:
        kinds = set(args.kinds.split(",")) if args.kinds else None
        for u in plan(records, only, targets, kinds):
            print(u, "ready" if ready(u, records) else "waiting")
        return 0
    if args.table:
        print(summary(records))
        return 0
    if args.plot:
        plot(records, FIGURE)
        return 0
    if args.worker:
        return worker(only, args.hours, targets, set(args.kinds.split(",")) if args.kinds else None)
    p.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
