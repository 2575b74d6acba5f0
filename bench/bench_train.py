"""Benchmark: the searched child finetuned from the supernet's weights against the same child from
scratch, on Fashion-MNIST, with the same recipe and epochs.

Goal (issue 6): at the default target the inherited child reaches >= 91.0 % test accuracy within
10 minutes of finetuning on this 2-core CPU. Steps:

1. the search: ``--search-dir DIR`` (a finished ``dnas-search`` run) or, without it, the default
   ``dnas-search`` is run first (about 9 minutes) into ``bench/runs/search``;
2. ``dnas-train arch=DIR`` with the inherited weights (``init=auto``), then ``init=scratch``;
   ``--epochs`` and every other setting are the same for both (the ``conf/train.yaml`` defaults).

Each finished run is appended to ``bench/results/train.json`` (``--quick``: ``train_quick.json``)
at once, so an interrupted benchmark keeps what it measured; a rerun replaces the records of the
same (init, epochs, search) instead of adding duplicates. Wall-clock and process CPU time of the
finetune (the Lightning fit, without data loading and the final test) are recorded apart:
on 2 cores anything else running slows a run by up to 2×.

    python bench/bench_train.py                              # search + both finetunes
    python bench/bench_train.py --search-dir outputs/search/DATE/TIME
    python bench/bench_train.py --quick                      # < 5 min: small data, 1 epoch
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


def _compose(name: str, overrides: list[str]):
    from hydra import compose, initialize_config_module

    with initialize_config_module("dnas.conf", version_base="1.3"):
        return compose(name, overrides=overrides, return_hydra_config=True)


def _machine() -> dict:
    import torch

    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "processor": platform.machine(),
    }


def _save(path: Path, records: list[dict]) -> None:
    from dnas.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(records, indent=1) + "\n")


def run_search(out: Path, quick: bool) -> Path:
    from dnas.cli.search import run

    overrides = ["experiment=quick"] if quick else []
    t0, c0 = time.perf_counter(), time.process_time()
    run(_compose("search", [*overrides, f"hydra.runtime.output_dir={out}"]), output_dir=out)
    print(
        f"search: {time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU",
        file=sys.stderr,
    )
    return out


def finetune(search_dir: Path, init: str, epochs: int, out: Path, quick: bool) -> dict:
    from dnas.cli.train import run
    from dnas.space import Architecture

    overrides = [f"arch={search_dir}", f"init={init}", f"trainer.max_epochs={epochs}"]
    if quick:
        overrides += ["data.limit_train=6000", "data.limit_test=2000"]
    c0 = time.process_time()
    acc = run(_compose("train", overrides), output_dir=out)
    cpu_s = time.process_time() - c0
    arch = Architecture.load(out / "arch.yaml")
    record = json.loads((out / "run.json").read_text())
    m = arch.metrics
    return {
        "init": "supernet" if init == "auto" else init,
        "epochs": epochs,
        "test_acc": acc,
        "inherited_acc_before_finetune": m.get("inherited_acc"),
        "supernet_acc": m.get("supernet_acc"),
        "finetune_s": round(record["train_s"], 1),
        "run_cpu_s": round(cpu_s, 1),
        "latency_ms": m["latency_ms"],
        "energy_mj": m["energy_mj"],
        "target_latency_ms": m.get("target_latency_ms"),
        "search_dir": str(search_dir),
        "run_dir": str(out),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--search-dir", type=Path, help="a finished dnas-search run (default: run one)")
    p.add_argument("--epochs", type=int, default=None, help="finetune epochs (conf default)")
    p.add_argument("--quick", action="store_true", help="small data, 1 epoch (< 5 min)")
    p.add_argument("--only", choices=("supernet", "scratch"), help="run one of the two")
    args = p.parse_args(argv)
    if not os.environ.get("TRITON_INTERPRET"):
        os.environ["TRITON_INTERPRET"] = "1"  # before Lightning imports triton (CPU machine)
    from omegaconf import OmegaConf

    epochs = args.epochs or (
        1
        if args.quick
        else int(
            OmegaConf.load(ROOT.parent / "src" / "dnas" / "conf" / "train.yaml").trainer.max_epochs
        )
    )
    runs = ROOT / "runs" / ("quick" if args.quick else "full")
    search_dir = args.search_dir or runs / "search"
    if not (search_dir / "arch.yaml").is_file():
        if args.search_dir:
            print(f"bench_train: {search_dir} holds no arch.yaml", file=sys.stderr)
            return 2
        run_search(search_dir, args.quick)
    path = RESULTS / ("train_quick.json" if args.quick else "train.json")
    records = json.loads(path.read_text()) if path.is_file() else []
    for init in ("auto", "scratch"):
        name = "supernet" if init == "auto" else "scratch"
        if args.only and args.only != name:
            continue
        rec = finetune(search_dir, init, epochs, runs / f"train_{name}_{epochs}ep", args.quick)
        rec.update(machine=_machine(), quick=args.quick, date=time.strftime("%Y-%m-%d"))
        records = [
            r
            for r in records
            if (r["init"], r["epochs"], r["search_dir"]) != (rec["init"], epochs, rec["search_dir"])
        ] + [rec]
        _save(path, records)
        print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
