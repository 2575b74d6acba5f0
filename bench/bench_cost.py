"""Benchmark of the BitFusion cost backends and of cost-table builds.

Measures, in one run and on the same sample of layer configurations drawn from the built-in search
spaces, the scalar oracle against the vectorized PyTorch backend (and, in a full run, the Triton
kernel under the interpreter when no GPU is present), then the time to build the default
``fmnist_mbv2`` table and the ``apq_mbv2`` table with APQ's bits {4, 6, 8}.

    python bench/bench_cost.py            # full run  -> bench/results/cost.json
    python bench/bench_cost.py --quick    # < 1 min   -> bench/results/cost_quick.json

Prints one JSON line with at least configs, vectorized_s, scalar_s and speedup.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from importlib import resources
from pathlib import Path

import torch
import yaml

from dnas.cost.backend import evaluate
from dnas.cost.batch import COUNTER_COLUMNS
from dnas.cost.hardware import BitFusionConfig
from dnas.cost.layer import layer_shape
from dnas.cost.oracle import layer_cost
from dnas.cost.table import build_table
from dnas.space import SearchSpace, load_space

RESULTS = Path(__file__).parent / "results"


def sample_configs(n: int, seed: int = 0) -> list:
    """n distinct layer shapes drawn evenly from the fmnist, cifar and apq spaces' grids."""
    rng = random.Random(seed)
    pools = []
    for name in ("fmnist_mbv2", "cifar_mbv2", "apq_mbv2"):
        space = load_space(name)
        shapes = set()
        for cl in space.costed_layers():
            k, w, wb, ab = cl.grid_shape()
            for _ in range(max(1, n // 20)):
                idx = (rng.randrange(k), rng.randrange(w), rng.randrange(wb), rng.randrange(ab))
                shapes.add(layer_shape(cl, *idx))
        pools.append(sorted(shapes))
    out = []
    for pool in pools:
        out += rng.sample(pool, min(len(pool), n // len(pools)))
    return out


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def apq_468() -> SearchSpace:
    """APQ's space with APQ's bit-widths {4, 6, 8} (``dnas-lut space=apq_mbv2 space.bits=[4,6,8]``)."""
    d = yaml.safe_load((resources.files("dnas") / "conf" / "space" / "apq_mbv2.yaml").read_text())
    d["bits"] = [4, 6, 8]
    space = SearchSpace.from_dict(d)
    assert all(b.bits.w_bits == (4, 6, 8) for b in space.searchable_blocks)
    return space


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sample, no apq/Triton (< 1 min)")
    ap.add_argument("--configs", type=int, default=None, help="sample size (default 150/600)")
    args = ap.parse_args()
    hw = BitFusionConfig()
    n = args.configs or (150 if args.quick else 600)
    configs = sample_configs(n)

    t0 = time.perf_counter()
    ref = [layer_cost(c, hw) for c in configs]
    scalar_s = time.perf_counter() - t0
    res = evaluate(configs, hw, backend="torch")
    vectorized_s = best_of(lambda: evaluate(configs, hw, backend="torch"), 3)
    mismatches = sum(
        dict(zip(COUNTER_COLUMNS, res.counters[i].tolist()))
        != {k: getattr(r, k) for k in COUNTER_COLUMNS}
        for i, r in enumerate(ref)
    )
    result = {
        "configs": len(configs),
        "scalar_s": round(scalar_s, 4),
        "vectorized_s": round(vectorized_s, 4),
        "speedup": round(scalar_s / vectorized_s, 1),
        "scalar_ms_per_config": round(1e3 * scalar_s / len(configs), 3),
        "vectorized_ms_per_config": round(1e3 * vectorized_s / len(configs), 4),
        "mismatches_vs_oracle": mismatches,
    }

    fm = load_space("fmnist_mbv2")
    t0 = time.perf_counter()
    table = build_table(fm, hw, backend="torch")
    result["fmnist_table_s"] = round(time.perf_counter() - t0, 3)
    result["fmnist_table_entries"] = table.num_entries
    result["fmnist_table_unique_shapes"] = table.header.extra["unique_shapes"]

    if not args.quick:
        apq = apq_468()
        t0 = time.perf_counter()
        table = build_table(apq, hw, backend="torch")
        result["apq468_table_s"] = round(time.perf_counter() - t0, 3)
        result["apq468_table_entries"] = table.num_entries
        result["apq468_table_unique_shapes"] = table.header.extra["unique_shapes"]
        t0 = time.perf_counter()
        table = build_table(load_space("apq_mbv2"), hw, backend="torch")
        result["apq_all_bits_table_s"] = round(time.perf_counter() - t0, 3)
        result["apq_all_bits_table_entries"] = table.num_entries
        try:
            import dnas_kernels

            if dnas_kernels.available():
                sub = configs[:60]
                t0 = time.perf_counter()
                evaluate(sub, hw, backend="triton")
                result["triton_configs"] = len(sub)
                result["triton_s"] = round(time.perf_counter() - t0, 3)
                result["triton_mode"] = "gpu" if torch.cuda.is_available() else "interpreter"
        except ImportError:
            pass

    result["machine"] = {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("cost_quick.json" if args.quick else "cost.json")
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(json.dumps(result))
    if mismatches:
        sys.exit(f"{mismatches} configurations differ from the oracle")


if __name__ == "__main__":
    main()
