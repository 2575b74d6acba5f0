"""The README's chain, search → train → export → cost → Pareto, as a user types it (tiny data)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

SMALL = ["data=synthetic", "data.num_train=512", "data.num_test=128", "trainer.max_epochs=1"]


def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    code = "import sys; from {m} import main; sys.argv[0] = {n!r}; sys.exit(main())"
    module, name = args[0]
    out = subprocess.run(
        [sys.executable, "-c", code.format(m=module, n=name), *args[1:]],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.mark.slow
def test_search_train_export_cost_pareto(tmp_path):
    env = {**os.environ, "DNAS_CACHE": str(tmp_path / "cache")}
    runs = tmp_path / "runs"
    _cli(
        [
            ("dnas.cli.search", "dnas-search"),
            *SMALL,
            "search.warmup_epochs=0",
            f"hydra.run.dir={runs}/search",
        ],
        env,
    )
    _cli(
        [
            ("dnas.cli.train", "dnas-train"),
            *SMALL,
            f"arch={runs}/search",
            f"hydra.run.dir={runs}/train",
        ],
        env,
    )
    out = _cli([("dnas.cli.export", "dnas-export"), str(runs / "train")], env)
    assert "onnxruntime" in out.stdout
    for name in ("model.safetensors", "model.onnx", "arch.yaml"):
        assert (runs / "train" / "export" / name).is_file()
    out = _cli([("dnas.cli.cost", "dnas-cost"), "arch", str(runs / "train")], env)
    assert "match" in out.stdout.lower()
    _cli([("dnas.cli.pareto", "dnas-pareto"), str(runs), "-o", str(runs)], env)
    with open(runs / "pareto.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2  # the search's architecture, and its finetuned child
    assert sum(bool(r["finetuned_acc"]) for r in rows) == 1
