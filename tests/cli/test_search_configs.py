"""Every dnas-search config composes, and its instantiable parts instantiate."""

from __future__ import annotations

from importlib import resources

import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dnas.cost.targets import Targets
from dnas.search.losses import BudgetLoss
from dnas.space import SearchSpace


def options(group: str) -> list[str]:
    root = resources.files("dnas") / "conf" / group
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def compose_search(*overrides):
    with initialize_config_module("dnas.conf", version_base="1.3"):
        return compose("search", overrides=list(overrides))


@pytest.mark.parametrize("loss", options("loss"))
def test_loss_configs(loss):
    cfg = compose_search(f"loss={loss}")
    BudgetLoss(targets=Targets(latency_ms=1.0), **OmegaConf.to_container(cfg.loss))


@pytest.mark.parametrize("data", options("data"))
def test_data_configs(data):
    cfg = compose_search(f"data={data}")
    dm = instantiate(cfg.data)
    space = SearchSpace.from_dict(OmegaConf.to_container(cfg.space, resolve=True))
    assert tuple(dm.input_shape) == (space.in_channels, space.resolution, space.resolution)


@pytest.mark.parametrize("logger", options("logger"))
def test_logger_configs(logger, tmp_path):
    cfg = compose_search(f"logger={logger}")
    instantiate(cfg.logger, save_dir=str(tmp_path))


@pytest.mark.parametrize("trainer", options("trainer"))
def test_trainer_configs(trainer):
    cfg = compose_search(f"trainer={trainer}")
    assert cfg.trainer.max_epochs >= 1
    if trainer == "default":
        instantiate(cfg.trainer, logger=False, enable_progress_bar=False)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_configs(experiment):
    cfg = compose_search(f"experiment={experiment}")
    instantiate(cfg.optimizer.weights)
    instantiate(cfg.optimizer.arch)
    assert cfg.trainer.max_epochs > cfg.search.warmup_epochs


def test_default_search_config():
    cfg = compose_search()
    assert cfg.space.name == "fmnist_mbv2" and cfg.target.latency_frac is not None
    opt = instantiate(cfg.optimizer.weights)
    sched = instantiate(cfg.scheduler)
    import torch

    o = opt([torch.nn.Parameter(torch.zeros(1))])
    assert sched(o).T_max == cfg.trainer.max_epochs


def compose_train(*overrides):
    with initialize_config_module("dnas.conf", version_base="1.3"):
        return compose("train", overrides=["arch=some/run", *overrides])


@pytest.mark.parametrize("data", options("data"))
def test_train_config_composes_with_every_data_set(data):
    cfg = compose_train(f"data={data}")
    dm = instantiate(cfg.data)
    assert dm.arch_fraction == 0.0  # a child trains on every training image
    import torch

    opt = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    assert opt.defaults["lr"] == cfg.optimizer.lr
    assert cfg.train.bn_batches >= 1 and cfg.trainer.max_epochs >= 1
