"""The head-to-head benchmark's bookkeeping (``bench/bench_search.py``): what it resumes from and
in which order ``--scratch`` trains, since its records outlive the run directories they name."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dnas.space import Architecture, load_space

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_search.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_search", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _arch(seed: int) -> Architecture:
    return load_space().random_arch(seed).with_metrics(latency_ms=0.3, energy_mj=0.4)


def test_arch_source_prefers_the_run_then_the_record(bench, tmp_path):
    runs = tmp_path / "runs"
    kept = tmp_path / "kept"
    kept.mkdir()
    on_disk, in_record = _arch(0), _arch(1)
    on_disk.save(kept / "arch.yaml")

    # the run directory survives: its arch.yaml, not the record's copy
    found = bench.arch_source({"run_dir": str(kept), "arch": in_record.to_dict()}, runs)
    assert found == kept / "arch.yaml"
    assert Architecture.load(found) == on_disk

    # the run directory is gone: the record's architecture, written under the front member's name
    lost = tmp_path / "gone" / "dnas_front_s0" / "front" / "1_latency"
    found = bench.arch_source({"run_dir": str(lost), "arch": in_record.to_dict()}, runs)
    assert found == runs / "dnas_front_s0_1_latency_arch.yaml"
    assert Architecture.load(found) == in_record
    assert Architecture.load(found).metrics == in_record.metrics

    # neither: nothing to train
    assert bench.arch_source({"run_dir": str(lost)}, runs) is None


def test_surviving_oneoff_keeps_only_files_that_exist(bench, tmp_path):
    supernet = tmp_path / "supernet.pt"
    supernet.write_bytes(b"x")
    records = [
        # seed 0: an older record whose files are gone, then one whose supernet exists
        {"seed": 0, "one_off_supernet": str(tmp_path / "old.pt"), "one_off_supernet_s": 1.0},
        {
            "seed": 0,
            "one_off_supernet": str(supernet),
            "one_off_supernet_s": 2.0,
            "one_off_pdata": str(tmp_path / "missing.csv"),
            "one_off_pdata_s": 3.0,
        },
        {"seed": 1, "one_off_supernet": str(tmp_path / "gone.pt"), "one_off_supernet_s": 4.0},
        {"seed": 2},  # a differentiable search: no one-off files at all
    ]
    assert bench.surviving_oneoff(records) == {0: {"supernet": str(supernet), "supernet_s": 2.0}}


def test_scratch_plan_order_and_done(bench):
    def rec(method, seed, frac, budget="standard", key="latency_frac"):
        return {
            "method": method,
            "seed": seed,
            "target_key": key,
            "target_frac": frac,
            "budget": budget,
            "run_dir": f"{method}_s{seed}_{key}{frac}_{budget}",
        }

    records = [
        rec("random", 0, 0.15),
        rec("dnas", 0, 0.3, "larger"),
        rec("evolution_predictor", 1, 0.15),
        rec("dnas", 1, 0.15),
        rec("evolution_predictor", 0, 0.3),
        rec("dnas", 0, 0.3),
        rec("evolution_predictor", 0, 0.15),
        rec("dnas", 0, 0.15),
        rec("dnas", 0, 0.3),  # a second record of one run directory (a front's member, say)
    ]
    plan = bench.scratch_plan(records, done={"dnas_s0_latency_frac0.15_standard"})
    assert [(r["method"], r["seed"], r["target_frac"], r["budget"]) for r in plan] == [
        # paired methods first, seed by seed, target by target, dnas before APQ within a target
        ("evolution_predictor", 0, 0.15, "standard"),
        ("dnas", 0, 0.3, "standard"),
        ("evolution_predictor", 0, 0.3, "standard"),
        ("dnas", 1, 0.15, "standard"),
        ("evolution_predictor", 1, 0.15, "standard"),
        # then the other methods, then the larger budget
        ("random", 0, 0.15, "standard"),
        ("dnas", 0, 0.3, "larger"),
    ]


def test_speed_figure_times_the_reference_step_and_leaves_the_rng_alone(bench):
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("bench_speed", BENCH.with_name("speed.py"))
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    times = speed.step_times(steps=2, warmup=1, batch=4)
    assert len(times) == 2 and all(t > 0 for t in times)
    assert torch.equal(torch.rand(3), expected)  # the caller's random stream is untouched
    with pytest.raises(ValueError, match="need steps >= 1"):
        speed.step_times(steps=0)
    # the records table shows the figure, and a dash for records made before it existed
    r = {
        "method": "dnas",
        "seed": 0,
        "target_metric": "latency_ms",
        "target_value": 0.4662,
        "target_key": "latency_frac",
        "target_frac": 0.3,
        "latency_ms": 0.46,
        "energy_mj": 0.3,
        "budget_used": 0.99,
        "supernet_acc": 0.88,
        "test_acc": 0.9,
        "search_s": 600.0,
        "one_off_s": 0.0,
        "per_target_s": 600.0,
        "search_cpu_s": 1200.0,
        "evaluated": 0,
    }
    rows = bench.table([r, {**r, "seed": 1, "speed_s": 0.0417}]).splitlines()[2:]
    assert rows[0].endswith("| 0 | - |") and rows[1].endswith("| 0 | 42 ms |")
