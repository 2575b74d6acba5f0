"""How the architecture is read off a finished search: ``argmax`` vs ``fill`` vs ``budget``.

The search itself does not depend on the derivation (it only picks what validation evaluates), so
each strategy is applied to the same finished search (its ``supernet.pt`` holds the distribution),
and every derived network is finetuned by the head-to-head's recipe (``dnas-train``, 2 epochs,
from the search's weights). Records go to ``bench/results/derive.json``: budget used, accuracy
inside the supernet before finetuning (``inherited_acc``) and after (``test_acc``). Finished
finetunes are reused, so the benchmark resumes.

    python bench/bench_derive.py RUN_DIR [RUN_DIR ...]    # default: the head-to-head's dnas runs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "derive.json"
STRATEGIES = ("argmax", "fill", "budget")


def derive_into(run: Path, strategy: str, out: Path) -> dict:
    """Write ``out/{arch.yaml, supernet.pt, space.yaml}`` for ``strategy`` on ``run``'s search."""

    import yaml

    from dnas.cost.hardware import BitFusionConfig
    from dnas.cost.table import load_or_build
    from dnas.cost.targets import resolve_targets
    from dnas.derive import derive_within_budget
    from dnas.space import Architecture, SearchSpace
    from dnas.train.load import load_supernet

    space = SearchSpace.from_dict(yaml.safe_load((run / "space.yaml").read_text()))
    table, _, _ = load_or_build(space, BitFusionConfig())
    supernet = load_supernet(run / "supernet.pt", space)
    found = Architecture.load(run / "arch.yaml").metrics
    spec = {m: found[f"target_{m}"] for m in ("latency_ms", "energy_mj") if f"target_{m}" in found}
    targets = resolve_targets(spec, table.extremes(space))
    arch, cost, _ = derive_within_budget(
        space, table, supernet.relaxed(), targets, strategy=strategy
    )
    out.mkdir(parents=True, exist_ok=True)
    arch.save(out / "arch.yaml")
    shutil.copy(run / "supernet.pt", out / "supernet.pt")
    shutil.copy(run / "space.yaml", out / "space.yaml")
    m, t = next(iter(targets.active().items()))
    return {"target_metric": m, "target_value": t, "budget_used": cost[m] / t, **cost}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="argmax vs fill vs budget derivation, finetuned")
    p.add_argument("runs", nargs="*", type=Path, help="dnas-search run directories")
    p.add_argument("--epochs", type=int, default=2, help="finetune epochs (the head-to-head's: 2)")
    args = p.parse_args(argv)
    os.environ.setdefault("TRITON_INTERPRET", "1")
    from hydra import compose, initialize_config_module

    from dnas.cli.train import run as train
    from dnas.space import Architecture

    runs = args.runs or sorted((ROOT / "runs" / "search").glob("dnas*_s*_*frac*[0-9]"))
    records = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    done = {(r["run"], r["strategy"]) for r in records}
    for run in runs:
        for strategy in STRATEGIES:
            if (str(run), strategy) in done:
                continue
            work = ROOT / "runs" / "derive" / f"{run.name}_{strategy}"
            rec = {"run": str(run), "strategy": strategy, **derive_into(run, strategy, work)}
            trained = work.parent / f"{work.name}_train"
            if not (trained / "arch.yaml").is_file():
                t0 = time.perf_counter()
                with initialize_config_module("dnas.conf", version_base="1.3"):
                    cfg = compose(
                        "train",
                        [f"arch={work}", f"trainer.max_epochs={args.epochs}"],
                        return_hydra_config=True,
                    )
                train(cfg, output_dir=trained)
                print(f"{run.name} {strategy}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            m = Architecture.load(trained / "arch.yaml").metrics
            rec.update(
                inherited_acc=m["inherited_acc"],
                test_acc=m["test_acc"],
                finetune_epochs=args.epochs,
                date=time.strftime("%Y-%m-%d %H:%M"),
            )
            records.append(rec)
            from dnas.atomic import atomic_path

            with atomic_path(RESULTS) as tmp:
                tmp.write_text(json.dumps(records, indent=1) + "\n")
            print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
