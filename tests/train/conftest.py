"""A tiny dnas-search run on synthetic data, shared by the training and export tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

SEARCH = [
    "data=synthetic",
    "data.num_train=512",
    "data.num_test=128",
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "trainer.enable_model_summary=false",
    "search.warmup_epochs=1",
    "search.bn_batches=2",
    "final.bn_batches=2",
    "target.latency_frac=0.2",
]
TRAIN = [
    "data=synthetic",
    "data.num_train=512",
    "data.num_test=128",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.enable_model_summary=false",
    "train.bn_batches=2",
]


def compose_config(name: str, *overrides: str):
    with initialize_config_module("dnas.conf", version_base="1.3"):
        return compose(name, overrides=list(overrides), return_hydra_config=True)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def search_run(tmp_path_factory, cache_dir) -> Path:
    """The run directory of a 2-epoch search on synthetic data."""
    from dnas.cli.search import run

    out = tmp_path_factory.mktemp("search")
    mp = pytest.MonkeyPatch()
    mp.setenv("DNAS_CACHE", str(cache_dir))
    try:
        run(compose_config("search", *SEARCH, f"hydra.runtime.output_dir={out}"), output_dir=out)
    finally:
        mp.undo()
    return out


@pytest.fixture(scope="session")
def train_run(tmp_path_factory, cache_dir, search_run) -> Path:
    """The run directory of a 1-epoch finetune of that search's child (inherited weights)."""
    from dnas.cli.train import run

    out = tmp_path_factory.mktemp("train")
    mp = pytest.MonkeyPatch()
    mp.setenv("DNAS_CACHE", str(cache_dir))
    try:
        run(compose_config("train", *TRAIN, f"arch={search_run}"), output_dir=out)
    finally:
        mp.undo()
    return out
