# ---
# jupyter:
#   jupytext:
#     formats: py:percent,ipynb
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Sweeps and the head-to-head: accuracy against cost, differentiable search against evolution
#
# This notebook reads two kinds of results and plots their Pareto fronts (accuracy against
# BitFusion latency and energy):
#
# 1. a **multirun directory**, the output of `dnas-search -m ...` (or `dnas-evolve -m ...`): one
#    run directory per budget with its `arch.yaml` (exact cost, accuracy), `run.json` (method,
#    config) and `metrics.csv` (per-epoch metrics). It is read by the same code as `dnas-pareto`;
#    the search trajectories (expected cost per epoch against each run's budget) come from
#    `metrics.csv`;
# 2. the **head-to-head** records of `bench/bench_search.py` (`bench/results/search.json`): every
#    method at every target, each architecture finetuned by the same recipe, with the wall-clock
#    the search took — the differentiable search (`dnas`, one search per target; `dnas_front`,
#    one search for all targets) against APQ's evolution (`evolution_predictor`,
#    `evolution_direct`) and random search.
#
# Open it with `jupytext --to ipynb notebooks/sweep_analysis.py`. The tests run it as a script on
# a tiny two-run multirun and this repository's records.

# %% tags=["parameters"]
multirun_dir = None  # a dnas-search -m output; None: the newest multirun/search/*/* here, if any
results_json = None  # head-to-head records; None: this checkout's bench/results/search.json
methods = ["dnas", "dnas_front", "evolution_predictor", "evolution_direct", "random"]

# %% [markdown]
# ## 1. A multirun directory

# %%
import csv
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

import dnas
from dnas.cli.pareto import STYLES, collect, draw_pareto, print_summary, rows_from_records

if multirun_dir is None:
    found = sorted(Path("multirun/search").glob("*/*"))
    multirun_dir = found[-1] if found else None
print(f"multirun: {multirun_dir or 'none found (set multirun_dir)'}")
sweep = collect([multirun_dir], warn=print) if multirun_dir else []
if sweep:
    print_summary(sweep)

# %% [markdown]
# The front of the sweep: every run's derived architecture at its exact cost, with its accuracy
# inside the supernet (a search's `test_acc`) or after finetuning (a `dnas-train` run); step lines
# join each method's non-dominated architectures.

# %%
if sweep:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    draw_pareto(sweep, axes)
    fig.suptitle(f"{multirun_dir}: {len(sweep)} architectures")
    fig.tight_layout()

# %% [markdown]
# How each search got there: the expected latency of the architecture distribution per epoch
# (solid) against its run's budget (dotted), and the exact latency of the network derived at each
# validation (markers), which stays within the budget.


# %%
def epoch_series(run_dir: Path, column: str) -> list[tuple[int, float]]:
    """(epoch, value) of one column of a run's metrics.csv, where it was logged."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [(int(r["epoch"]), float(r[column])) for r in csv.DictReader(f) if r.get(column)]


searches = [r for r in sweep if epoch_series(r.run_dir, "cost/expected_latency_ms")]
if searches:
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in searches:
        (line,) = ax.plot(*zip(*epoch_series(r.run_dir, "cost/expected_latency_ms")), "-")
        derived = epoch_series(r.run_dir, "cost/derived_latency_ms")
        if derived:
            ax.plot(*zip(*derived), "o", color=line.get_color())
        if r.target_metric == "latency_ms":
            ax.axhline(r.target_value, color=line.get_color(), linestyle=":")
        line.set_label(f"{Path(r.run_dir).name}: {r.target_metric} ≤ {r.target_value:.4g}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("latency (ms)")
    ax.set_title("expected (line) and derived (markers) latency against the budget (dotted)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()

# %% [markdown]
# ## 2. The head-to-head
#
# One record per (method, seed, target): the exact cost of the architecture the method found, its
# accuracy inside the supernet and after the common finetune, and the search's wall-clock split
# into one-off work (a supernet, a predictor's data) and per-target work. Only the standard-budget
# records of the chosen methods are used.

# %%
if results_json is None:
    results_json = Path(dnas.__file__).resolve().parents[2] / "bench" / "results" / "search.json"
results_json = Path(results_json)
records = json.loads(results_json.read_text()) if results_json.is_file() else []
records = [
    r
    for r in records
    if r["method"] in methods and r.get("budget", "standard") == "standard" and not r.get("quick")
]
print(f"{len(records)} records from {results_json}")
targets = sorted({(r["target_key"], r["target_frac"]) for r in records})
present = [m for m in methods if any(r["method"] == m for r in records)]
colors = {m: STYLES.get(m, (f"C{j}", "o"))[0] for j, m in enumerate(present)}  # as draw_pareto
print(f"{'mean finetuned accuracy':>23}  " + "  ".join(f"{f'{k} {f}':>17}" for k, f in targets))
for m in present:
    cells = []
    for key, frac in targets:
        accs = [
            r["test_acc"]
            for r in records
            if (r["method"], r["target_key"], r["target_frac"]) == (m, key, frac)
        ]
        cells.append(f"{100 * np.mean(accs):6.2f} % (n={len(accs)})" if accs else "—")
    print(f"{m:>23}  " + "  ".join(f"{c:>17}" for c in cells))

# %% [markdown]
# Every finetuned architecture at its exact cost; a method's step line is the best accuracy it
# reached within each cost.

# %%
if records:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    draw_pareto(rows_from_records(records), axes)
    fig.suptitle("head-to-head: finetuned test accuracy against exact BitFusion cost")
    fig.tight_layout()

# %% [markdown]
# Per target: each seed's finetuned accuracy (points) and the mean over seeds (bar), method by
# method.

# %%
if records:
    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / len(present)
    for j, m in enumerate(present):
        label = m  # one legend entry per method
        for i, (key, frac) in enumerate(targets):
            accs = [
                100 * r["test_acc"]
                for r in records
                if (r["method"], r["target_key"], r["target_frac"]) == (m, key, frac)
            ]
            x = i + (j - (len(present) - 1) / 2) * width
            if accs:
                ax.bar(x, np.mean(accs), width, color=colors[m], alpha=0.35, label=label)
                ax.plot([x] * len(accs), accs, "o", color=colors[m], markersize=4)
                label = None
    ax.set_xticks(range(len(targets)), [f"{k} {f}" for k, f in targets])
    accs = [100 * r["test_acc"] for r in records]
    ax.set_ylim(min(accs) - 1, max(accs) + 1)
    ax.set_ylabel("finetuned test accuracy (%)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, ncol=len(present))
    fig.tight_layout()

# %% [markdown]
# What a whole front cost: for every method and seed that covered all the targets, the mean
# finetuned accuracy over the targets against the search wall-clock of the whole front (one-off
# work once, plus each target's own). Hollow markers: runs timed while the machine was shared
# with other work, whose wall-clock is not comparable.

# %%
fronts = []
for m in present:
    for seed in sorted({r["seed"] for r in records if r["method"] == m}):
        mine = [r for r in records if r["method"] == m and r["seed"] == seed]
        if {(r["target_key"], r["target_frac"]) for r in mine} != set(targets):
            continue
        wall_min = (max(r["one_off_s"] for r in mine) + sum(r["per_target_s"] for r in mine)) / 60
        shared = any(r.get("machine_shared") for r in mine)
        fronts.append((m, seed, wall_min, 100 * np.mean([r["test_acc"] for r in mine]), shared))
for m, seed, wall_min, acc, shared in fronts:
    note = " (machine shared)" if shared else ""
    print(f"{m} seed {seed}: {len(targets)} targets in {wall_min:.1f} min, mean {acc:.2f} %{note}")
if fronts:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for m in present:
        for mm, _, wall_min, acc, shared in fronts:
            if mm == m:
                face = "none" if shared else colors[m]
                ax.scatter(wall_min, acc, s=60, facecolors=face, edgecolors=colors[m], label=m)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8)
    ax.set_xlabel(f"search wall-clock of the whole front, {len(targets)} targets (min)")
    ax.set_ylabel("mean finetuned test accuracy (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
