"""Searching a converted network with the search loop of dnas-search (Lightning, synthetic data)."""

from __future__ import annotations

from functools import partial

import pytest
import pytorch_lightning as pl
import torch

from dnas.checkpoint import CheckpointError
from dnas.cost.graph import graph_cost
from dnas.cost.targets import BudgetError
from dnas.data import SyntheticDataModule
from dnas.errors import DnasError
from dnas.graph.search import GraphSearchModule, GraphTargetSpec
from dnas.networks import resnet20
from dnas.search.losses import BudgetLoss
from tests.graph.test_convert import TinyNet


def make(network, shape, **kwargs):
    return GraphSearchModule(
        network=network,
        input_shape=shape,
        weight_optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9),
        arch_optimizer=partial(torch.optim.Adam, lr=0.05),
        budget=partial(BudgetLoss, kind="hinge", lam=2.0),
        bn_batches=2,
        **kwargs,
    )


def trainer(tmp_path, epochs=2, **kwargs):
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def data(shape, classes=10):
    return SyntheticDataModule(
        num_train=256, num_test=64, num_classes=classes, input_shape=shape, batch_size=32
    )


@pytest.mark.parametrize(
    "target",
    [
        {"bitops_frac": 0.3},
        {"latency_frac": 0.3, "size_frac": 0.5},
        {"energy_frac": 0.4},
    ],
)
def test_resnet20_is_searched_within_budget(tmp_path, target):
    torch.manual_seed(0)
    module = make(resnet20(in_channels=1), (1, 16, 16), target=target, skips=True)
    before = [p.detach().clone() for p in module.supernet.arch_parameters()]
    trainer(tmp_path).fit(module, datamodule=data((1, 16, 16)))
    after = module.supernet.arch_parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, after))  # the search moved them
    choice, cost = module.derive()
    graph = module.graph
    _, total = graph_cost(graph, choice)
    assert cost["latency_ms"] == pytest.approx(total["latency_ms"], rel=1e-9)
    assert cost["bitops"] == graph.bitops(choice)
    for metric, limit in module.targets.active().items():
        assert cost[metric] <= limit * (1 + 1e-12), metric
    # the derived network runs on its own and classifies
    child = module.supernet.child(choice)
    out = child.eval()(torch.randn(3, 1, 16, 16))
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    # the search's validation evaluated the derived network
    assert "val/acc" in trainer_metrics(module)


def trainer_metrics(module):
    return set(module.trainer.callback_metrics)


def test_a_front_on_a_tiny_cnn_and_its_test(tmp_path):
    torch.manual_seed(0)
    front = [{"bitops_frac": 0.2}, {"latency_frac": 0.6}]
    module = make(TinyNet(), (3, 16, 16), front=front, kernels={3: (3, 5)})
    t = trainer(tmp_path)
    dm = data((3, 16, 16))
    t.fit(module, datamodule=dm)
    (result,) = t.test(module, datamodule=dm, verbose=False)
    assert {"test/acc_t0", "test/acc_t1"} <= set(result)
    for k in range(2):
        _, cost = module.derive(k)
        assert all(cost[m] <= v * (1 + 1e-12) for m, v in module.front[k].active().items())


def test_resume_and_refusals(tmp_path):
    torch.manual_seed(0)
    dm = data((3, 16, 16))
    module = make(TinyNet(), (3, 16, 16), target={"bitops_frac": 0.5})
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    trainer(tmp_path, epochs=2, callbacks=[ckpt]).fit(module, datamodule=dm)
    last = tmp_path / "ck" / "last.ckpt"
    resumed = make(TinyNet(), (3, 16, 16), target={"bitops_frac": 0.5})
    trainer(tmp_path, epochs=3).fit(resumed, datamodule=dm, ckpt_path=last)
    assert resumed.current_epoch == 3
    other = make(TinyNet(), (3, 16, 16), target={"bitops_frac": 0.4})
    with pytest.raises(CheckpointError, match="targets"):
        trainer(tmp_path, epochs=3).fit(other, datamodule=dm, ckpt_path=last)


def test_bad_input_is_refused_before_training():
    with pytest.raises(BudgetError, match="below the smallest"):
        make(TinyNet(), (3, 16, 16), target={"bitops": 1.0})
    with pytest.raises(BudgetError, match=r"either target\.bitops or target\.bitops_frac"):
        GraphTargetSpec(bitops=1e6, bitops_frac=0.5)
    with pytest.raises(BudgetError, match="unknown target key"):
        make(TinyNet(), (3, 16, 16), target={"flops_frac": 0.5})
    with pytest.raises(DnasError, match="outside what hardware"):
        make(TinyNet(), (3, 16, 16), target={"bitops_frac": 0.5}, w_bits=(4, 16))
    with pytest.raises(DnasError, match=r"input_shape must be \(C, H, W\)"):
        make(TinyNet(), (16, 16), target={"bitops_frac": 0.5})
    module = make(TinyNet(), (3, 16, 16), target={"bitops_frac": 0.5})
    with pytest.raises(DnasError, match="gives inputs"):
        pl.Trainer(max_epochs=1, logger=False).fit(module, datamodule=data((1, 16, 16)))


def test_dnas_search_network_resnet20_end_to_end(tmp_path, monkeypatch):
    """`dnas-search network=resnet20` (Hydra): arch.yaml names every group and layer of the
    network, its exact costs within the budget; the supernet and records beside it."""
    import json

    from hydra import compose, initialize_config_module

    from dnas.cli.search import run
    from dnas.graph.convert import convert
    from dnas.graph.io import load_choice
    from tests.runs import SEARCH_BASE

    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    with initialize_config_module("dnas.conf", version_base="1.3"):
        cfg = compose(
            "search",
            overrides=[
                *SEARCH_BASE,
                "network=resnet20",
                "target.latency_frac=null",
                "target.bitops_frac=0.4",
                "target.size_frac=0.8",
                "data.input_shape=[1,16,16]",
                f"hydra.runtime.output_dir={tmp_path}",
            ],
            return_hydra_config=True,
        )
    acc = run(cfg, output_dir=tmp_path)
    graph = convert(
        resnet20(in_channels=1),
        torch.zeros(1, 1, 16, 16),
        w_bits=(2, 4, 8),
        a_bits=(2, 4, 8),
        skips=True,
    )
    choice, metrics = load_choice(tmp_path / "arch.yaml", graph)
    assert metrics["bitops"] == graph.bitops(choice) <= metrics["target_bitops"]
    assert metrics["size_kib"] == graph.size_kib(choice) <= metrics["target_size_kib"]
    _, total = graph_cost(graph, choice)
    assert metrics["latency_ms"] == pytest.approx(total["latency_ms"], rel=1e-9)
    assert metrics["test_acc"] == pytest.approx(acc)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["method"] == "dnas_graph" and record["network"] == "ResNetCifar"
    assert (tmp_path / "supernet.pt").is_file() and (tmp_path / "search.png").is_file()
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history) == int(cfg.trainer.max_epochs)


def test_a_graph_budget_on_a_mobilenet_space_is_refused():
    from hydra import compose, initialize_config_module

    from dnas.cli.search import search_module

    with initialize_config_module("dnas.conf", version_base="1.3"):
        cfg = compose("search", overrides=["target.bitops_frac=0.3"])
    with pytest.raises(BudgetError, match="network=resnet20"):
        search_module(cfg, None, None, None)


def test_dnas_train_finetunes_and_retrains_a_searched_network(tmp_path, monkeypatch):
    """search (network=resnet20) → dnas-train inheriting its supernet → dnas-train init=scratch
    on that training's directory: each writes the choice with its exact costs, and the trained
    model.pt loads into the child of the choice and gives the accuracy recorded."""
    import json

    from hydra import compose, initialize_config_module

    from dnas.cli.search import run as search
    from dnas.cli.train import evaluate
    from dnas.cli.train import run as train
    from dnas.graph.io import load_choice
    from dnas.graph.search import graph_supernet
    from tests.runs import SEARCH_BASE, TRAIN

    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    small = ["data.input_shape=[1,16,16]"]
    with initialize_config_module("dnas.conf", version_base="1.3"):
        cfg = compose(
            "search",
            overrides=[*SEARCH_BASE, *small, "network=resnet20", "target.bitops_frac=0.5"],
        )
        search(cfg, output_dir=tmp_path / "s")
        tcfg = compose("train", overrides=[*TRAIN, *small, f"arch={tmp_path / 's'}"])
        acc = train(tcfg, output_dir=tmp_path / "t")
        scfg = compose(
            "train", overrides=[*TRAIN, *small, f"arch={tmp_path / 't'}", "init=scratch"]
        )
        train(scfg, output_dir=tmp_path / "u")
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert record["source_method"] == "dnas_graph" and record["init"].endswith("supernet.pt")
    assert json.loads((tmp_path / "u" / "run.json").read_text())["init"] == "scratch"
    supernet = graph_supernet(resnet20(in_channels=1), (1, 16, 16), skips=True)
    choice, metrics = load_choice(tmp_path / "t" / "arch.yaml", supernet.graph)
    searched, _ = load_choice(tmp_path / "s" / "arch.yaml", supernet.graph)
    assert choice == searched and metrics["test_acc"] == pytest.approx(acc)
    assert metrics["bitops"] == supernet.graph.bitops(choice) and "inherited_acc" in metrics
    child = supernet.child(choice)
    child.load_state_dict(torch.load(tmp_path / "t" / "model.pt", weights_only=True))
    from hydra.utils import instantiate

    dm = instantiate(tcfg.data)  # the training's own data, test split and all
    dm.setup("fit")
    n_test = sum(len(y) for _, y in dm.test_dataloader())
    assert evaluate(child, dm.test_dataloader()) == pytest.approx(acc, abs=1.01 / n_test)
    # dnas-cost arch: each run's choice costed layer by layer, equal to what it recorded
    from dnas.cli.cost import main as cost

    for run_dir in ("s", "t"):
        assert (
            cost(["arch", str(tmp_path / run_dir), "--csv", str(tmp_path / f"{run_dir}.csv")]) == 0
        )
    with open(tmp_path / "t.csv") as f:
        layers = [line.split(",")[0] for line in f.read().splitlines()[1:]]
    ran = [
        n.name for n in supernet.graph.layers if n.name not in supernet.graph.skipped_layers(choice)
    ]
    assert layers == [*ran, "total"]
    # dnas-pareto: both runs on one front (the search's accuracy inside its supernet, the
    # training's finetuned one), priced on one network
    from dnas.cli.pareto import collect

    rows = collect([tmp_path / "s", tmp_path / "t"], warn=pytest.fail)
    assert sorted(
        (r.method, r.supernet_acc is not None, r.finetuned_acc is not None) for r in rows
    ) == [
        ("dnas_graph", False, True),
        ("dnas_graph", True, False),
    ]
    assert {r.pricing["space"][0] for r in rows} == {"network ResNetCifar"}
    # dnas-export: the integer export of the trained network, checked against it
    from dnas.cli.export import main as export
    from dnas.export.graph import reference_forward_graph
    from dnas.export.integer import load_safetensors

    assert export([str(tmp_path / "t"), "--check-batches", "2"]) == 0
    assert (tmp_path / "t" / "export" / "model.onnx").is_file()
    exported = load_safetensors(tmp_path / "t" / "export" / "model.safetensors")
    x = torch.randn(32, 1, 16, 16)
    with torch.no_grad():
        want = child.eval()(x)
    got = reference_forward_graph(exported, x)
    assert float((got.argmax(1) == want.argmax(1)).float().mean()) >= 0.95
    assert (tmp_path / "t" / "export" / "arch.yaml").read_text() == (
        tmp_path / "t" / "arch.yaml"
    ).read_text()


def test_first_and_last_layers_kept_at_8_bits(tmp_path):
    torch.manual_seed(0)
    module = make(
        resnet20(in_channels=1),
        (1, 16, 16),
        target={"bitops_frac": 0.2},
        layer_bits={"stem.0": ((8,), (8,)), "fc": ((8,), (8,))},
    )
    trainer(tmp_path, epochs=2).fit(module, datamodule=data((1, 16, 16)))
    choice, cost = module.derive()
    assert choice.bits["stem.0"] == (8, 8) and choice.bits["fc"] == (8, 8)
    assert cost["bitops"] <= module.targets.bitops
    assert module.graph.layer("layers.0.conv1").w_bits == (2, 4, 8)  # the others choose
    with pytest.raises(DnasError, match=r"layer_bits\.fc w_bits \[16\]"):
        make(resnet20(in_channels=1), (1, 16, 16), layer_bits={"fc": ((16,), (8,))})


@pytest.mark.parametrize(
    "override, says",
    [
        ("graph.kernels={3: 5}", "graph.kernels must map a kernel size"),
        ("graph.kernels={a: [3, 5]}", "graph.kernels must map a kernel size"),
        ("graph.layer_bits={fc: [8, 8]}", "graph.layer_bits must map layer names"),
        ("graph.w_bits=8", "graph.w_bits must be a list"),
        ("+graph.nope=1", "graph.nope is not a choice setting"),
    ],
)
def test_a_malformed_graph_setting_is_one_line(override, says):
    from hydra import compose, initialize_config_module

    from dnas.cli.search import graph_options

    with initialize_config_module("dnas.conf", version_base="1.3"):
        cfg = compose("search", overrides=["network=resnet20", override])
    from omegaconf import OmegaConf

    with pytest.raises(DnasError, match=says):
        graph_options(OmegaConf.to_container(cfg.graph, resolve=True))


def test_a_network_search_checkpoint_is_taken_for_resuming(tmp_path):
    """dnas-search's pre-Hydra check knows a network search's checkpoint (it refused it, so an
    interrupted network= search could not resume)."""
    from dnas.checkpoint import CheckpointError
    from dnas.cli.common import check_resume_checkpoint

    path = tmp_path / "last.ckpt"
    torch.save({"dnas_graph_search": {"format": 1}, "state_dict": {}}, path)
    check_resume_checkpoint("search", str(path))
    with pytest.raises(CheckpointError, match="not one of dnas-train"):
        check_resume_checkpoint("train", str(path))


@pytest.mark.parametrize("warmup", [1.5, -1, True])
def test_a_warmup_that_is_not_a_whole_number_is_refused(warmup):
    """search.warmup_epochs=1.5 passed as int(1.5) = 1 while every epoch ran as warm-up: an
    architecture was reported that no search step chose (fresh probe, F4)."""
    from dnas.cli.common import check_epochs

    with pytest.raises(DnasError, match="warmup_epochs must be a whole number"):
        check_epochs(2, warmup)
    with pytest.raises(DnasError, match="warmup_epochs must be a whole number"):
        make(TinyNet(), (3, 16, 16), target={"bitops_frac": 0.5}, warmup_epochs=warmup)
