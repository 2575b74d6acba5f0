"""dnas-search end to end on synthetic data: arch.yaml within budget, metrics, plot, checkpoint."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_module

from dnas.cli.search import run
from dnas.cost.hardware import BitFusionConfig
from dnas.cost.table import load_or_build
from dnas.space import Architecture, load_space
from tests.runs import SEARCH_BASE

SMALL = [*SEARCH_BASE, "target.latency_frac=0.1"]


def compose_search(*overrides):
    with initialize_config_module("dnas.conf", version_base="1.3"):
        return compose("search", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize(
    "loss, derive", [("hinge", "budget"), ("lagrangian", "argmax"), ("hinge", "fill")]
)
def test_search_writes_arch_within_budget(tmp_path, loss, derive, monkeypatch):
    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    cfg = compose_search(
        *SMALL, f"loss={loss}", f"search.derive={derive}", f"hydra.runtime.output_dir={tmp_path}"
    )
    acc = run(cfg, output_dir=tmp_path)
    arch = Architecture.load(tmp_path / "arch.yaml")
    space = load_space("fmnist_mbv2")
    space.validate_arch(arch)
    table, _, built = load_or_build(space, BitFusionConfig())
    assert not built  # the search cached the table
    lat, en = table.arch_cost(space, arch)
    assert arch.metrics["latency_ms"] == pytest.approx(lat, rel=1e-9)
    assert arch.metrics["energy_mj"] == pytest.approx(en, rel=1e-9)
    assert lat <= arch.metrics["target_latency_ms"] * (1 + 1e-12)
    assert arch.metrics["test_acc"] == pytest.approx(acc)
    with open(tmp_path / "metrics.csv", newline="") as f:
        cols = set(next(csv.reader(f)))
    for c in (
        "train/loss_epoch",
        "val/acc",
        "cost/expected_latency_ms",
        "cost/expected_energy_mj",
        "cost/derived_latency_ms",
        "arch/entropy",
        "arch/tau",
    ):
        assert c in cols, c
    # the history is what was logged, one row per epoch (taken after the test too)
    import json

    history = json.loads((tmp_path / "history.json").read_text())
    epochs = int(cfg.trainer.max_epochs)
    assert [h["epoch"] for h in history] == list(range(epochs))
    with open(tmp_path / "metrics.csv", newline="") as f:
        logged = {int(r["epoch"]): float(r["val/acc"]) for r in csv.DictReader(f) if r["val/acc"]}
    assert [h["val_acc"] for h in history] == pytest.approx([logged[e] for e in range(epochs)])
    assert {"tau", "entropy", "expected_latency_ms", "derived_latency_ms"} <= set(history[-1])
    assert arch.metrics["val_acc"] == history[-1]["val_acc"]
    assert (tmp_path / "search.png").stat().st_size > 10_000
    state = torch.load(tmp_path / "supernet.pt", weights_only=True)
    assert any("arch" in k for k in state)
    # the reported accuracy is the derived network's: rebuilt from the outputs alone (the child of
    # arch.yaml with supernet.pt's weights, BN re-estimated on the same batches), it scores the same
    from hydra.utils import instantiate

    from dnas.cli.train import evaluate
    from dnas.train.load import init_child

    data = instantiate(cfg.data)
    data.setup("fit")
    bn = int(cfg.final.bn_batches)
    child = init_child(space, arch, tmp_path / "supernet.pt", data.bn_recalibration_loader(bn), bn)
    n_test = sum(len(y) for _, y in data.test_dataloader())
    assert evaluate(child, data.test_dataloader()) == pytest.approx(acc, abs=1.01 / n_test)
    # provenance: arch.yaml names the table its costs came from; run.json what produced it
    import dnas

    assert arch.table_hash == table.header.content_hash
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["table_hash"] == table.header.content_hash
    assert record["dnas_version"] == dnas.__version__
    assert record["config"]["search"]["derive"] == derive


def test_unreachable_target_fails_before_training(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "dnas.cli.search",
            "data=synthetic",
            "target.latency_frac=null",
            "target.latency_ms=0.0001",
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert "unreachable" in out.stderr and "cheapest" in out.stderr
    assert not (tmp_path / "arch.yaml").exists()


def test_missing_data_fails_before_training(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "dnas.cli.search",
            f"data.root={tmp_path}/nowhere",
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert "apt-get install -y dataset-fashion-mnist" in out.stderr


@pytest.mark.slow
def test_quick_experiment_on_fashion_mnist(tmp_path):
    """The README's demo: `dnas-search experiment=quick` on the real data, within budget."""
    from dnas.data import FashionMNISTDataModule

    try:
        FashionMNISTDataModule().check()
    except Exception as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    out = subprocess.run(
        [sys.executable, "-m", "dnas.cli.search", "experiment=quick", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    arch = Architecture.load(tmp_path / "arch.yaml")
    assert arch.metrics["latency_ms"] <= arch.metrics["target_latency_ms"]
    assert arch.metrics["test_acc"] > 0.5  # 12k images, 3 epochs: well above chance (10 %)
    for f in ("metrics.csv", "search.png", "supernet.pt", "history.json"):
        assert (tmp_path / f).is_file(), f


@pytest.mark.slow
def test_multirun_sweep_over_targets(tmp_path):
    """A Hydra multirun over budgets: one run directory and one arch.yaml per target."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "dnas.cli.search",
            "-m",
            *SEARCH_BASE,
            "target.latency_frac=0.05,0.5",
            f"hydra.sweep.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    archs = [Architecture.load(tmp_path / str(i) / "arch.yaml") for i in range(2)]
    lat = [a.metrics["latency_ms"] for a in archs]
    tgt = [a.metrics["target_latency_ms"] for a in archs]
    assert tgt[0] < tgt[1]
    assert lat[0] <= tgt[0] and lat[1] <= tgt[1]


def test_data_and_space_mismatch_fails_before_training(tmp_path):
    cfg = compose_search(
        "space=cifar_mbv2", "data=synthetic", f"hydra.runtime.output_dir={tmp_path}"
    )
    with pytest.raises(ValueError, match=r"\(1, 28, 28\).*expects \(3, 32, 32\)"):
        run(cfg, output_dir=tmp_path)
    assert not (tmp_path / "arch.yaml").exists()


def test_evaluating_the_derived_architecture_keeps_the_supernets_statistics(tmp_path):
    """Validation and test re-estimate BN for the derived architecture; the supernet's own
    statistics (those of the sub-networks it trained) come back afterwards, so ``supernet.pt``
    holds them and not the derived architecture's (reset blocks at mean 0 / var 1)."""
    from functools import partial

    from dnas.cost.targets import TargetSpec
    from dnas.search.losses import BudgetLoss
    from dnas.search.module import SearchModule
    from dnas.supernet import bn_statistics

    space = load_space("fmnist_mbv2")
    table, _, _ = load_or_build(space, BitFusionConfig(), str(tmp_path / "t.pt"), "torch")
    module = SearchModule(
        space=space,
        table=table,
        target=TargetSpec(latency_frac=0.1),
        budget=partial(BudgetLoss, kind="hinge"),
        weight_optimizer=lambda p: torch.optim.SGD(p, lr=0.01),
        arch_optimizer=lambda p: torch.optim.Adam(p, lr=0.01),
        bn_batches=2,
    )
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, 1, 28, 28, generator=gen) for _ in range(3)]
    module.supernet.set_mode("uniform")
    with torch.no_grad():
        for x in batches:
            module.supernet(x)
    before = bn_statistics(module.supernet)
    module._prepare_derived(lambda n: batches[:n])
    changed = bn_statistics(module.supernet)
    assert any(not torch.equal(before[k], changed[k]) for k in before)  # it did re-estimate
    module._restore_supernet_bn()
    after = bn_statistics(module.supernet)
    for k in before:
        torch.testing.assert_close(after[k], before[k], rtol=0, atol=0, msg=k)


def test_uniform_weight_paths_train_uniform_paths_while_searching(tmp_path, monkeypatch):
    """``search.weight_paths=uniform``: during the search epochs, weight steps run the supernet
    in uniform mode (SPOS) and architecture steps sample the distribution (gumbel); the derived
    network meets the budget."""
    paths = "uniform"
    from dnas.search.module import SearchModule
    from dnas.supernet import SuperNet

    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    seen: list[tuple[int, str, bool]] = []
    real_step = SearchModule.training_step

    def step(self, batch, batch_idx):
        real_set = SuperNet.set_mode

        def spy(net, mode, arch=None):
            seen.append((self.current_epoch, mode, self.searching))
            return real_set(net, mode, arch)

        with monkeypatch.context() as m:
            m.setattr(SuperNet, "set_mode", spy)
            return real_step(self, batch, batch_idx)

    monkeypatch.setattr(SearchModule, "training_step", step)
    cfg = compose_search(
        *SMALL, f"search.weight_paths={paths}", f"hydra.runtime.output_dir={tmp_path}"
    )
    run(cfg, output_dir=tmp_path)
    searching = [mode for _, mode, s in seen if s]
    assert {m for _, m, s in seen if not s} == {"uniform"}  # the warm-up
    # weight steps in uniform mode, every arch_every-th batch an arch step in gumbel mode
    assert set(searching) == {"uniform", "gumbel"}
    assert searching.count("uniform") > searching.count("gumbel") >= 1
    arch = Architecture.load(tmp_path / "arch.yaml")
    assert arch.metrics["latency_ms"] <= arch.metrics["target_latency_ms"] * (1 + 1e-12)


def test_separate_kernel_weights_search_end_to_end(tmp_path, monkeypatch):
    """``search.kernel_weights=separate``: the supernet holds one depthwise weight per kernel
    size, the derived network meets the budget, and the run is derived again and finetuned from
    its supernet.pt (whose layout is read from the file)."""
    from dnas.derive.rederive import rederive
    from dnas.train import init_child, load_supernet

    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    cfg = compose_search(
        *SMALL, "search.kernel_weights=separate", f"hydra.runtime.output_dir={tmp_path}"
    )
    run(cfg, output_dir=tmp_path)
    state = torch.load(tmp_path / "supernet.pt", weights_only=True)
    dw = [v for k, v in state.items() if k.endswith("dw.weight")]
    assert dw and all(v.ndim == 5 and v.shape[0] == 3 for v in dw)  # kernels 3, 5 and 7
    arch = Architecture.load(tmp_path / "arch.yaml")
    assert arch.metrics["latency_ms"] <= arch.metrics["target_latency_ms"] * (1 + 1e-12)
    again, _ = rederive(tmp_path)
    assert again.blocks == arch.blocks
    space = load_space("fmnist_mbv2")
    supernet = load_supernet(tmp_path / "supernet.pt", space)
    child = init_child(space, arch, tmp_path / "supernet.pt", [torch.randn(4, 1, 28, 28)], 1)
    for block, choice in zip(child.blocks, (b for b in arch.blocks if not b.skipped)):
        src = supernet.blocks[block.index].dw
        torch.testing.assert_close(
            block.dw.weight, src.weight_of(int(choice.kernel))[: choice.width], rtol=0, atol=0
        )
