"""dnas-evolve end to end on synthetic data: every method writes an architecture within budget."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from dnas.cli.evolve import run
from dnas.cost.hardware import BitFusionConfig
from dnas.cost.table import load_or_build
from dnas.derive import ArchState
from dnas.evolve import DirectFitness, GenomeSpace
from dnas.space import Architecture, load_space
from dnas.supernet import SuperNet, recalibrate_bn
from tests.runs import EVOLVE, compose_config


@pytest.fixture(scope="module")
def evolve_run(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("evolve")
    mp = pytest.MonkeyPatch()
    mp.setenv("DNAS_CACHE", str(cache_dir))
    try:
        acc = run(compose_config("evolve", *EVOLVE), output_dir=out)
    finally:
        mp.undo()
    return out, acc


def _check_run(out, method, cache_dir):
    arch = Architecture.load(out / "arch.yaml")
    space = load_space("fmnist_mbv2")
    table, _, _ = load_or_build(space, BitFusionConfig(), str(next(cache_dir.rglob("*.pt"))))
    lat, en = table.arch_cost(space, arch)
    assert arch.metrics["latency_ms"] == lat and arch.metrics["energy_mj"] == en
    assert lat <= arch.metrics["target_latency_ms"]
    record = json.loads((out / "run.json").read_text())
    assert record["method"] == method
    for k in ("search_s", "search_cpu_s", "evaluated"):
        assert k in record
    return arch, record


def test_evolution_with_predictor_writes_its_outputs(evolve_run, cache_dir):
    out, acc = evolve_run
    arch, record = _check_run(out, "evolution_predictor", cache_dir)
    assert arch.metrics["test_acc"] == acc
    # measured: the predictor's samples plus the re-checked fittest (the cache may merge some)
    assert 24 <= record["evaluated"] <= 26 and record["predictor_samples"] == 24
    assert record["predictor_holdout_samples"] == 5  # 20 % of 24, measured before the final fit
    assert -1 <= record["predictor_holdout_kendall"] <= 1
    assert record["predictor_holdout_rmse"] >= 0 and record["predictor_train_rmse"] >= 0
    assert record["generations"] == 3 and record["predicted"] == 20 + 3 * 20
    with open(out / "evolution.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["generation"]) for r in rows] == [0, 1, 2, 3]
    best = [float(r["best_fitness"]) for r in rows]
    assert best == sorted(best)
    with open(out / "predictor_data.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 24
    for name in ("supernet.pt", "predictor.pt", "evolution.png", "space.yaml"):
        assert (out / name).is_file(), name


@pytest.mark.parametrize(
    "overrides, method",
    [
        (["fitness=direct", "algorithm=random"], "random"),
        (["fitness=direct", "evolution.generations=1"], "evolution_direct"),
        (["target.latency_frac=null", "target.energy_frac=0.4"], "evolution_predictor"),
    ],
)
def test_methods_reuse_the_supernet_and_predictor_data(
    evolve_run, tmp_path, cache_dir, monkeypatch, overrides, method
):
    """The supernet and the predictor data do not depend on the target: a second run reuses them
    and trains nothing (supernet_s = 0)."""
    monkeypatch.setenv("DNAS_CACHE", str(cache_dir))
    src, _ = evolve_run
    cfg = compose_config(
        "evolve",
        *EVOLVE,
        f"supernet={src}/supernet.pt",
        f"predictor.data={src}/predictor_data.csv",
        *overrides,
    )
    run(cfg, output_dir=tmp_path)
    arch = Architecture.load(tmp_path / "arch.yaml")
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["method"] == method and record["supernet_s"] == 0.0
    if "target.energy_frac=0.4" in overrides:
        assert arch.metrics["energy_mj"] <= arch.metrics["target_energy_mj"]
    else:
        _check_run(tmp_path, method, cache_dir)
    if method == "random":
        assert record["evaluated"] >= 30  # every sample measured (the cache merges duplicates)


def test_direct_fitness_is_the_supernets_accuracy(evolve_run):
    out, _ = evolve_run
    space = load_space("fmnist_mbv2")
    supernet = SuperNet(space)
    supernet.load_state_dict(torch.load(out / "supernet.pt", weights_only=True))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (64,), generator=gen)
    calib = [torch.randn(16, 1, 28, 28, generator=gen) for _ in range(2)]
    genomes = GenomeSpace(space)
    fit = DirectFitness(supernet, genomes, x, y, calib, batch_size=25)
    arch = space.random_arch(3)
    acc = fit([ArchState.from_arch(space, arch)])[0]
    supernet.set_mode("fixed", arch)
    recalibrate_bn(supernet, calib, 2)
    with torch.no_grad():
        ref = float((supernet.eval()(x).argmax(1) == y).float().mean())
    assert acc == pytest.approx(ref)
    assert fit([ArchState.from_arch(space, arch)])[0] == acc and fit.evaluated == 1


def test_bad_method_is_refused_before_training(tmp_path):
    cfg = compose_config("evolve", *EVOLVE, "algorithm=bayesian")
    with pytest.raises(ValueError, match="algorithm is one of"):
        run(cfg, output_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_too_few_predictor_samples_are_refused_before_training(tmp_path, cache_dir, monkeypatch):
    from dnas.errors import DnasError

    monkeypatch.setenv("DNAS_CACHE", str(cache_dir))
    empty = tmp_path / "empty.csv"
    empty.write_text("arch,accuracy\n")
    cfg = compose_config("evolve", *EVOLVE, "fitness=predictor", f"predictor.data={empty}")
    with pytest.raises(DnasError, match=r"too few samples \(.*empty.csv holds 0\)"):
        run(cfg, output_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()
    cfg = compose_config(
        "evolve", *EVOLVE, "fitness=predictor", f"predictor.data={empty}", "predictor.holdout=0"
    )
    with pytest.raises(DnasError, match=r"empty\.csv holds no sample"):
        run(cfg, output_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()
