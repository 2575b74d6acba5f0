"""Small run configurations shared by the end-to-end tests (synthetic data, seconds each)."""

from __future__ import annotations

from hydra import compose, initialize_config_module

TINY_DATA = [
    "data=synthetic",
    "data.num_train=512",
    "data.num_test=128",
    "trainer.accelerator=cpu",
    "trainer.enable_model_summary=false",
]
SEARCH_BASE = [
    *TINY_DATA,
    "trainer.max_epochs=2",
    "search.warmup_epochs=1",
    "search.bn_batches=2",
    "final.bn_batches=2",
]
SEARCH = [*SEARCH_BASE, "target.latency_frac=0.2"]

# dnas-fit on tiny synthetic data; every split parameter given, as a class switch keeps the
# compatible init_args of the default (Fashion-MNIST) data module
FIT_TINY = [
    "--data=dnas.data.SyntheticDataModule",
    "--data.num_train=512",
    "--data.num_test=128",
    "--data.batch_size=64",
    "--data.eval_batch_size=256",
    "--data.val_fraction=0.0",
    "--trainer.accelerator=cpu",
    "--trainer.enable_model_summary=false",
    "--model.bn_batches=2",
    "--model.test_bn_batches=2",
]
TRAIN = [*TINY_DATA, "trainer.max_epochs=1", "train.bn_batches=2"]


def compose_config(name: str, *overrides: str):
    with initialize_config_module("dnas.conf", version_base="1.3"):
        return compose(name, overrides=list(overrides), return_hydra_config=True)


EVOLVE = [
    *TINY_DATA,
    "trainer.max_epochs=1",
    "evaluation.images=128",
    "evaluation.bn_batches=2",
    "evaluation.recheck=2",
    "predictor.samples=24",
    "predictor.epochs=30",
    "evolution.generations=3",
    "evolution.population=20",
    "evolution.parents=5",
    "evolution.mutations=10",
    "evolution.crossovers=10",
    "random.samples=30",
    "final.bn_batches=2",
    "target.latency_frac=0.3",
]
