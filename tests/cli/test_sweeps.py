"""Sweeps: the threads setting, the shipped launcher and sweeper configs, and tiny multiruns.

The launchers and the sweeper are Hydra plugins (``pip install "dnas[sweep]"``); their tests skip
when the plugin is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dnas.cli.common import available_cores, parallel_jobs, set_threads
from dnas.space import Architecture
from tests.runs import TINY_DATA, compose_config

# One search epoch on 512 synthetic images: seconds per run.
TINY_SEARCH = [
    *TINY_DATA,
    "trainer.max_epochs=1",
    "search.warmup_epochs=0",
    "search.bn_batches=2",
    "final.bn_batches=2",
]


def needs(plugin: str):
    return pytest.importorskip(f"hydra_plugins.{plugin}", reason='needs pip install "dnas[sweep]"')


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def hydra_config():
    """Install a composed config as the running Hydra job's (what a launcher does), then unset."""

    def install(*overrides: str):
        HydraConfig.instance().set_config(compose_config("search", *overrides))

    yield install
    HydraConfig.instance().cfg = None


# ---------------------------------------------------------------------------------- threads
def test_threads_null_keeps_torch_default_and_an_integer_sets_it(restore_threads):
    before = torch.get_num_threads()
    assert set_threads(None) == before
    assert set_threads(1) == 1 == torch.get_num_threads()


@pytest.mark.parametrize("bad", [0, -2, 1.5, "two", True])
def test_threads_rejects_what_is_not_a_count(bad, restore_threads):
    with pytest.raises(ValueError, match="threads"):
        set_threads(bad)


def test_threads_auto_outside_a_parallel_launcher_keeps_torch_default(
    hydra_config, restore_threads
):
    before = torch.get_num_threads()
    assert parallel_jobs() == 1  # no Hydra run at all
    assert set_threads("auto") == before
    hydra_config()  # the basic launcher: one job at a time
    assert parallel_jobs() == 1
    assert set_threads("auto") == before


@pytest.mark.parametrize("n_jobs", [2, 3, -1])
def test_threads_auto_shares_the_cores_among_parallel_jobs(n_jobs, hydra_config, restore_threads):
    needs("hydra_joblib_launcher")
    hydra_config("hydra/launcher=parallel", f"hydra.launcher.n_jobs={n_jobs}")
    jobs = available_cores() if n_jobs == -1 else n_jobs
    assert parallel_jobs() == jobs
    assert set_threads("auto") == max(1, available_cores() // jobs)


def test_search_config_defaults_to_auto_threads_and_test_accuracy():
    cfg = compose_config("search")
    assert cfg.threads == "auto" and cfg.objective == "test_acc"


def test_unknown_objective_fails_before_training(tmp_path):
    from dnas.cli.search import run

    with pytest.raises(ValueError, match="objective='loss'"):
        run(compose_config("search", "objective=loss"), output_dir=tmp_path)


# ------------------------------------------------------------------------ launcher configs
def test_parallel_launcher_config_composes():
    needs("hydra_joblib_launcher")
    cfg = compose_config("search", "hydra/launcher=parallel")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("JoblibLauncher")
    assert launcher.n_jobs == 2
    instantiate(launcher)


def test_slurm_launcher_config_composes_with_ddp():
    needs("hydra_submitit_launcher")
    cfg = compose_config(
        "search",
        "hydra/launcher=slurm",
        "trainer=ddp",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.gpus_per_node=4",
        "hydra.launcher.timeout_min=90",
        "hydra.launcher.nodes=2",
        "trainer.num_nodes=2",
        "hydra.launcher.setup=[source .venv/bin/activate]",
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 4, 90)
    assert launcher.tasks_per_node == 4  # one DDP process per GPU follows gpus_per_node
    assert launcher.submitit_folder.endswith("/.submitit/%j")
    assert list(launcher.setup) == ["source .venv/bin/activate"]
    assert launcher.nodes == cfg.trainer.num_nodes == 2 and cfg.trainer.strategy.startswith("ddp")
    params = instantiate(launcher).params  # resolved as submitit would receive them
    assert params["tasks_per_node"] == 4 and params["partition"] == "gpu"


def test_optuna_sweeper_config_composes():
    needs("hydra_optuna_sweeper")
    cfg = compose_config("search", "hparams_search=optuna")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.direction == "maximize" and cfg.objective == "val_acc"
    assert set(sweeper.params) == {"loss.lam", "optimizer.weights.lr", "optimizer.arch.lr"}
    for key in sweeper.params:  # every swept name exists in the search config
        node, _, leaf = key.rpartition(".")
        assert leaf in OmegaConf.select(cfg, node), key
    assert cfg.hydra.mode.name == "MULTIRUN"


# --------------------------------------------------------------------------- tiny multiruns
def dnas_search(tmp_path: Path, cache_dir: Path, *overrides: str, timeout: int = 900):
    env = {**os.environ, "DNAS_CACHE": str(cache_dir), "MPLBACKEND": "Agg"}
    out = subprocess.run(
        [sys.executable, "-m", "dnas.cli.search", *overrides],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.mark.slow
def test_joblib_multirun_of_two_jobs(tmp_path, cache_dir):
    needs("hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    dnas_search(
        tmp_path,
        cache_dir,
        "-m",
        "hydra/launcher=parallel",
        "target.latency_frac=0.2,0.5",
        *TINY_SEARCH,
        f"hydra.sweep.dir={sweep}",
    )
    threads = max(1, available_cores() // 2)
    for job, frac in ((0, 0.2), (1, 0.5)):
        run = json.loads((sweep / str(job) / "run.json").read_text())
        assert run["method"] == "dnas" and run["config"]["target"]["latency_frac"] == frac
        assert run["torch_threads"] == threads
        assert (sweep / str(job) / "arch.yaml").is_file()
        assert (sweep / str(job) / "metrics.csv").is_file()


@pytest.mark.slow
def test_optuna_sweep_of_two_trials(tmp_path, cache_dir):
    needs("hydra_optuna_sweeper")
    sweep = tmp_path / "sweep"
    dnas_search(
        tmp_path,
        cache_dir,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        *TINY_SEARCH,
        f"hydra.sweep.dir={sweep}",
    )
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == {"loss.lam", "optimizer.weights.lr", "optimizer.arch.lr"}
    lams, val_accs = [], []
    for trial in (0, 1):
        run = json.loads((sweep / str(trial) / "run.json").read_text())
        assert run["config"]["objective"] == "val_acc"
        lams.append(run["config"]["loss"]["lam"])
        assert 0.5 <= lams[-1] <= 8.0
        val_accs.append(Architecture.load(sweep / str(trial) / "arch.yaml").metrics["val_acc"])
    assert lams[0] != lams[1]
    assert result["best_value"] == pytest.approx(max(val_accs))  # what dnas-search returned
