"""dnas-train: a searched architecture's child trained and written; load_child rebuilds it."""

from __future__ import annotations

import json

import pytest
import torch

import dnas
from dnas.cli.train import evaluate, run
from dnas.cost.hardware import BitFusionConfig
from dnas.cost.table import load_or_build
from dnas.data import SyntheticDataModule
from dnas.errors import DnasError
from dnas.space import Architecture, load_space
from dnas.supernet import ChildNet, SuperNet
from dnas.train import TrainError, init_child, load_child, load_supernet
from tests.runs import TRAIN, compose_config


def _data():
    data = SyntheticDataModule(num_train=512, num_test=128, arch_fraction=0.0)
    data.setup("fit")
    return data


def test_train_writes_a_loadable_child_with_exact_cost(train_run, search_run, cache_dir):
    arch = Architecture.load(train_run / "arch.yaml")
    searched = Architecture.load(search_run / "arch.yaml")
    assert arch == searched  # same choices
    space = load_space("fmnist_mbv2")
    table, _, _ = load_or_build(space, BitFusionConfig(), str(next(cache_dir.rglob("*.pt"))))
    lat, en = table.arch_cost(space, arch)
    assert arch.metrics["latency_ms"] == lat and arch.metrics["energy_mj"] == en
    # the search's accuracy inside the supernet is kept apart from the finetuned one
    assert arch.metrics["supernet_acc"] == searched.metrics["test_acc"]
    record = json.loads((train_run / "run.json").read_text())
    assert record["method"] == "train" and record["source_method"] == "dnas"
    assert record["init"].endswith("supernet.pt")
    state = torch.load(train_run / "model.pt", weights_only=True)
    assert not any("arch_" in k for k in state)
    for name in ("metrics.csv", "history.json", "train.png", "space.yaml"):
        assert (train_run / name).is_file(), name


def test_load_child_reproduces_the_trained_network(train_run):
    """The rebuilt network scores exactly the test accuracy the run measured, and its outputs
    equal a ChildNet loaded by hand from the same state dict."""
    child = dnas.load_child(train_run)
    assert not child.training
    acc = evaluate(child, _data().test_dataloader())
    assert acc == pytest.approx(Architecture.load(train_run / "arch.yaml").metrics["test_acc"])
    space = load_space("fmnist_mbv2")
    ref = ChildNet(space, Architecture.load(train_run / "arch.yaml"))
    ref.load_state_dict(torch.load(train_run / "model.pt", weights_only=True))
    x = torch.randn(5, 1, 28, 28)
    torch.testing.assert_close(child(x), ref.eval()(x), rtol=0, atol=0)


def test_inherited_child_starts_from_the_supernet(search_run):
    """init=supernet.pt: the child before finetuning is the supernet's sub-network (same outputs
    as the supernet in fixed mode after re-estimating BN on the same batches)."""
    space = load_space("fmnist_mbv2")
    arch = Architecture.load(search_run / "arch.yaml")
    data = _data()
    child = init_child(space, arch, search_run / "supernet.pt", data.bn_recalibration_loader(3), 3)
    supernet = load_supernet(search_run / "supernet.pt", space)
    supernet.set_mode("fixed", arch)
    from dnas.supernet import recalibrate_bn

    recalibrate_bn(supernet, data.bn_recalibration_loader(3), 3)
    x = data.split("test")[0][:16]
    torch.testing.assert_close(child.eval()(x), supernet.eval()(x), atol=1e-5, rtol=1e-4)
    scratch = init_child(space, arch, "scratch")
    assert not torch.allclose(scratch.stem.weight, child.stem.weight)


def test_separate_kernel_supernet_loads_as_one(tmp_path):
    space = load_space("fmnist_mbv2")
    torch.manual_seed(0)
    saved = SuperNet(space, kernel_weights="separate")
    torch.save(saved.state_dict(), tmp_path / "supernet.pt")
    loaded = load_supernet(tmp_path / "supernet.pt", space)
    assert loaded.kernel_weights == "separate"
    for (name, a), b in zip(saved.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_foreign_architecture_is_refused_before_training(tmp_path, search_run):
    cifar = load_space("cifar_mbv2")
    cifar.random_arch(0).save(tmp_path / "arch.yaml")
    cfg = compose_config("train", *TRAIN, f"arch={tmp_path}")
    with pytest.raises(TrainError, match="space=cifar_mbv2"):
        run(cfg, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(TrainError, match="not found"):
        run(compose_config("train", *TRAIN, f"arch={tmp_path}/nope"), output_dir=tmp_path / "o")
    (tmp_path / "model.pt").write_bytes(bytes(range(256)))
    with pytest.raises(TrainError, match=r"model.pt is not UTF-8 text .*; give a YAML file \(an"):
        run(compose_config("train", *TRAIN, f"arch={tmp_path}/model.pt"), output_dir=tmp_path / "o")


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.warmup_epochs=-1", "train.warmup_epochs must be >= 0"),
        ("train.label_smoothing=1.5", r"train.label_smoothing must be in \[0, 1\)"),
        ("train.bn_batches=-2", "train.bn_batches must be >= 0"),
    ],
)
def test_finetune_settings_are_refused_before_any_work(
    tmp_path, search_run, monkeypatch, override, message
):
    import dnas.train.load as load

    monkeypatch.setattr(load, "init_child", lambda *a, **k: pytest.fail("work started"))
    cfg = compose_config(
        "train", *TRAIN, f"arch={search_run}", f"init={search_run}/supernet.pt", override
    )
    with pytest.raises(DnasError, match=message):
        run(cfg, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_foreign_or_untrusted_checkpoint_is_refused(tmp_path, search_run):
    cifar = SuperNet(load_space("cifar_mbv2"))
    torch.save(cifar.state_dict(), tmp_path / "cifar.pt")
    cfg = compose_config("train", *TRAIN, f"arch={search_run}", f"init={tmp_path}/cifar.pt")
    with pytest.raises(TrainError, match="not a supernet of space 'fmnist_mbv2'"):
        run(cfg, output_dir=tmp_path / "out")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(TrainError, match="safely"):
        load_supernet(tmp_path / "evil.pt", load_space("fmnist_mbv2"))
    with pytest.raises(TrainError, match="init=scratch"):
        run(
            compose_config("train", *TRAIN, f"arch={search_run}", f"init={tmp_path}/none.pt"),
            output_dir=tmp_path / "out",
        )
    with pytest.raises(TrainError, match="no architecture"):
        run(compose_config("train", *TRAIN), output_dir=tmp_path / "out")


def test_load_child_names_what_is_missing(tmp_path):
    with pytest.raises(TrainError, match=r"model\.pt"):
        load_child(tmp_path)


def test_init_names_what_it_was_given_instead_of_a_supernet(tmp_path):
    """A child model.pt or a Lightning checkpoint as init= was "not a supernet of space
    'fmnist_mbv2': 48 missing ...; pass the space the search ran on": the space was right."""
    from dnas.cli.train import resolve_init

    space = load_space("fmnist_mbv2")
    child = ChildNet(space, space.random_arch(0))
    torch.save(child.state_dict(), tmp_path / "model.pt")
    with pytest.raises(TrainError, match="holds no architecture parameters: it is not a supernet"):
        load_supernet(tmp_path / "model.pt", space)
    torch.save({"state_dict": {}, "dnas_train": {}}, tmp_path / "last.ckpt")
    with pytest.raises(TrainError, match="is a Lightning checkpoint, not a supernet state dict"):
        load_supernet(tmp_path / "last.ckpt", space)
    torch.save(SuperNet(space).state_dict(), tmp_path / "supernet.pt")
    assert isinstance(load_supernet(tmp_path / "supernet.pt", space), SuperNet)  # still loads
    (tmp_path / "train_run").mkdir()
    with pytest.raises(TrainError, match=r"is a directory without a supernet\.pt"):
        resolve_init(str(tmp_path / "train_run"), tmp_path / "arch.yaml")
    with pytest.raises(TrainError, match="init= is empty"):
        resolve_init("", tmp_path / "arch.yaml")
    assert resolve_init(str(tmp_path), tmp_path / "arch.yaml") == str(tmp_path / "supernet.pt")


def test_a_search_run_directory_loads_its_supernet(tmp_path):
    """dnas-evolve supernet=RUN (a directory holding supernet.pt) said "not found"."""
    space = load_space("fmnist_mbv2")
    torch.save(SuperNet(space).state_dict(), tmp_path / "supernet.pt")
    assert isinstance(load_supernet(tmp_path, space), SuperNet)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainError, match="is a directory without a supernet"):
        load_supernet(tmp_path / "empty", space)
