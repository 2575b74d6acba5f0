"""Does a search's own supernet rank networks as training them from scratch does?

For one finished ``dnas-search`` run: its derived network, the same with every skipped block kept
(kernel 3), the all-8-bit widest full-depth kernel-3 network, and that network with kernel 5 in
one or two blocks, each measured inside the run's supernet (batch-norm statistics re-estimated on
50 training batches, then top-1 on 6 000 validation images, as APQ's direct fitness measures),
with its exact cost. Appends one record to ``bench/results/supernet_ranking.json``.

    python bench/probe_ranking.py bench/runs/uniform/dnas_s0_latency_frac0.3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "supernet_ranking.json"


def candidates(space, derived):
    from dnas.evolve.uniform import uniform_state

    out = {"derived": derived}
    kept = derived.copy()
    for b in space.blocks:
        if space.kernel_choices(b.index)[kept.kernel[b.index]] == "skip":
            kept.kernel[b.index] = 0
    out["derived, skipped blocks kept (k3)"] = kept
    base = uniform_state(space, 8, 3, "full", 1.0)
    out["8-bit widest full depth k3"] = base
    for blocks in ((0,), (4,), (0, 2)):
        s = base.copy()
        for i in blocks:
            s.kernel[i] = space.kernel_choices(i).index(5)
        out[f"8-bit widest full depth k3, k5 in block(s) {','.join(map(str, blocks))}"] = s
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a dnas-search run directory (arch.yaml, supernet.pt, space.yaml)")
    args = p.parse_args(argv)
    os.environ.setdefault("TRITON_INTERPRET", "1")
    import torch
    import yaml

    from dnas.atomic import atomic_path
    from dnas.cost.exact import ExactCost
    from dnas.cost.hardware import load_hardware
    from dnas.cost.table import load_or_build
    from dnas.data import FashionMNISTDataModule
    from dnas.evolve.fitness import DirectFitness
    from dnas.evolve.genome import GenomeSpace
    from dnas.space import Architecture, ArchState, SearchSpace
    from dnas.train.load import load_supernet

    torch.set_num_threads(1)
    run = Path(args.run)
    space = SearchSpace.from_dict(yaml.safe_load((run / "space.yaml").read_text()))
    table, _, _ = load_or_build(space, load_hardware("bitfusion"), None, "auto")
    costs = ExactCost(space, table)
    arch = Architecture.load(run / "arch.yaml")
    target = arch.metrics["target_latency_ms"]
    data = FashionMNISTDataModule(arch_fraction=0.5, val_fraction=0.1, seed=0)
    data.setup("fit")
    x, y = data.sample("val", 6000, torch.Generator().manual_seed(0))
    calibration = [b[0] for b in data.bn_recalibration_loader(50)]
    supernet = load_supernet(run / "supernet.pt", space)
    fitness = DirectFitness(supernet, GenomeSpace(space), x, y, calibration)
    rows = []
    for name, state in candidates(space, ArchState.from_arch(space, arch)).items():
        c = costs.total(state)
        rows.append(
            {
                "network": name,
                "latency_ms": c["latency_ms"],
                "budget_used": c["latency_ms"] / target,
                "supernet_val_acc": fitness.accuracy(state),
                "arch": state.to_arch(space).to_dict(),
            }
        )
        print(
            f"{name:60s} {c['latency_ms']:.4f} ms ({100 * rows[-1]['budget_used']:.0f} %) "
            f"inside the supernet {100 * rows[-1]['supernet_val_acc']:.2f} %",
            flush=True,
        )
    records = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    records.append(
        {
            "run_dir": os.path.relpath(run.resolve(), REPO),
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "target_latency_ms": target,
            "rows": rows,
        }
    )
    with atomic_path(RESULTS) as tmp:
        tmp.write_text(json.dumps(records, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
