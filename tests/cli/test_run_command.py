"""What every Hydra command shares (issue 9): checks before training, errors, multirun, run dirs."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import warnings

import pytest
import torch

from dnas.checkpoint import CHECKPOINT_FORMAT, CheckpointError, read_checkpoint
from dnas.cli.common import (
    _FAILED,
    check_epochs,
    discard_if_empty,
    main_exit,
    run_command,
    user_error,
)
from dnas.cost.targets import BudgetError, resolve_targets
from dnas.errors import DnasError, Interrupted
from dnas.search.module import check_checkpoint_state

EXTREMES = {
    "min_latency_ms": 0.1,
    "max_latency_ms": 1.0,
    "min_energy_mj": 0.2,
    "max_energy_mj": 2.0,
}


@pytest.mark.parametrize("bad", [0, -1, None, 2.5, True, "3"])
def test_max_epochs_must_be_a_positive_int(bad):
    with pytest.raises(DnasError, match=r"trainer\.max_epochs"):
        check_epochs(bad, 0)


def test_warmup_must_leave_a_search_epoch():
    assert check_epochs(3, 2) == 3
    with pytest.raises(DnasError, match="warmup_epochs=3"):
        check_epochs(3, 3)


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"latency_ms": float("nan")}, "finite"),
        ({"latency_ms": float("inf")}, "finite"),
        ({"energy_frac": float("nan")}, "finite"),
        ({"latency_ms": "fast"}, "must be a number"),
        ({"latency_ms": 0.05}, "unreachable"),
        ({"latency_frac": 1.5}, r"\[0, 1\]"),
    ],
)
def test_bad_targets_are_refused(spec, match):
    with pytest.raises(BudgetError, match=match):
        resolve_targets(spec, EXTREMES)


def test_a_target_above_the_dearest_network_warns():
    with pytest.warns(UserWarning, match="does not constrain"):
        t = resolve_targets({"latency_ms": 5.0}, EXTREMES)
    assert t.latency_ms == 5.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_targets({"latency_ms": 0.5}, EXTREMES)


def test_user_error_unwraps_hydra_instantiation():
    from hydra.errors import InstantiationException

    cause = DnasError("data.root=/x: no such directory")
    wrapped = InstantiationException("Error in call to target")
    wrapped.__cause__ = cause
    assert user_error(wrapped) is cause
    assert user_error(RuntimeError("a bug")) is None
    assert user_error(FileNotFoundError("f")) is not None


def test_run_command_outside_multirun(capsys):
    with pytest.raises(SystemExit) as e:
        run_command("dnas-x", lambda cfg: (_ for _ in ()).throw(DnasError("bad budget")), None)
    assert e.value.code == 2
    assert "dnas-x: error: bad budget" in capsys.readouterr().err
    with pytest.raises(RuntimeError):  # a bug keeps its traceback
        run_command("dnas-x", lambda cfg: (_ for _ in ()).throw(RuntimeError("bug")), None)
    with pytest.raises(SystemExit) as e:
        run_command("dnas-x", lambda cfg: (_ for _ in ()).throw(Interrupted("stopped", 143)), None)
    assert e.value.code == 143
    assert run_command("dnas-x", lambda cfg: 0.5, None) == 0.5


@pytest.mark.parametrize(
    "error",
    [
        NotADirectoryError(20, "Not a directory", "/data/notes.txt/cache"),
        PermissionError(1, "Operation not permitted", "/sys/cache"),
    ],
)
def test_a_write_the_file_system_refuses_in_a_hydra_command_is_one_line(capsys, error):
    """dnas.cli.entry made these one line, but inside a Hydra app Hydra caught them first and
    printed its traceback (a read-only DNAS_CACHE after the table was built, in dnas-search)."""

    def run(cfg):
        raise error

    with pytest.raises(SystemExit) as e:
        run_command("dnas-x", run, None)
    assert e.value.code == 2
    assert capsys.readouterr().err == f"dnas-x: error: {error.strerror}: {error.filename}\n"


def test_a_bad_job_does_not_stop_a_multirun(tmp_path, capsys, monkeypatch):
    """``-m target.latency_frac=1.5,0.2``: job 0 is reported, job 1 still runs, exit status 2."""
    from hydra import compose, initialize_config_module
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    _FAILED.clear()
    ran = []

    def job(cfg):
        frac = float(cfg.target.latency_frac)
        if frac > 1:
            raise BudgetError(f"target.latency_frac must be in [0, 1], got {frac}")
        ran.append(frac)
        return 0.9

    results = []
    for num, frac in enumerate([1.5, 0.2]):
        with initialize_config_module("dnas.conf", version_base="1.3"):
            cfg = compose(
                "search", overrides=[f"target.latency_frac={frac}"], return_hydra_config=True
            )
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.job.num = num
        cfg.hydra.runtime.output_dir = str(tmp_path / str(num))
        (tmp_path / str(num) / ".hydra").mkdir(parents=True)
        HydraConfig.instance().set_config(cfg)
        try:
            results.append(run_command("dnas-search", job, cfg))
        finally:
            HydraConfig.instance().cfg = None
    assert math.isnan(results[0]) and results[1] == 0.9 and ran == [0.2]
    assert not (tmp_path / "0").exists()  # the failed job's empty run directory is removed
    with pytest.raises(SystemExit) as e:
        main_exit("dnas-search")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "1 job(s) failed" in err and "job 0" in err and "latency_frac=1.5" in err
    _FAILED.clear()


def test_discard_if_empty_keeps_real_results(tmp_path):
    empty, full = tmp_path / "empty", tmp_path / "full"
    for d in (empty, full):
        (d / ".hydra").mkdir(parents=True)
        (d / "search.log").write_text("log")
    (full / "checkpoints").mkdir()
    discard_if_empty(empty)
    discard_if_empty(full)
    assert not empty.exists() and full.exists()


def test_run_dirs_are_unique_per_process():
    from hydra import compose, initialize_config_module

    with initialize_config_module("dnas.conf", version_base="1.3"):
        cfg = compose("search", return_hydra_config=True)
    import os

    from omegaconf import OmegaConf

    run_dir = OmegaConf.to_container(cfg.hydra.run, resolve=True)["dir"]
    assert run_dir.endswith(f"-{os.getpid()}")


# ------------------------------------------------------------------------------ checkpoints
class _Space:
    name = "tiny"

    def __init__(self, fp: str) -> None:
        self._fp = fp

    def fingerprint(self) -> str:
        return self._fp


def _state(**kw):
    base = {
        "format": CHECKPOINT_FORMAT,
        "space": "tiny",
        "space_fingerprint": "abc",
        "targets": [{"latency_ms": 0.3}],
    }
    return {**base, **kw}


def test_checkpoint_of_another_space_or_target_is_refused():
    from dnas.cost.targets import Targets

    front = [Targets(latency_ms=0.3)]
    check_checkpoint_state(_state(), _Space("abc"), front)
    with pytest.raises(CheckpointError, match="space 'tiny'"):
        check_checkpoint_state(_state(), _Space("xyz"), front)
    with pytest.raises(CheckpointError, match="targets"):
        check_checkpoint_state(_state(), _Space("abc"), [Targets(latency_ms=0.4)])
    with pytest.raises(CheckpointError, match="targets"):
        check_checkpoint_state(_state(), _Space("abc"), [*front, Targets(energy_mj=1.0)])
    with pytest.raises(CheckpointError, match="format"):
        check_checkpoint_state(_state(format=99), _Space("abc"), front)


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_read_checkpoint_refuses_foreign_truncated_and_malicious_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_checkpoint(tmp_path / "missing.ckpt")
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 1}, good)
    assert read_checkpoint(good)["epoch"] == 1
    trunc = tmp_path / "trunc.ckpt"
    trunc.write_bytes(good.read_bytes()[:50])
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": _Payload()}, evil)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.ones(1)}, foreign)
    for path in (trunc, evil):
        with pytest.raises(CheckpointError, match="not a readable dnas checkpoint") as e:
            read_checkpoint(path)
        assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="is a directory; give the checkpoint file"):
        read_checkpoint(tmp_path)


def test_unknown_config_name_lists_the_valid_ones():
    out = subprocess.run(
        [sys.executable, "-m", "dnas.cli.search", "space=nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2  # bad input, before Hydra composes (Hydra's own exit is 1)
    assert out.stderr.strip() == (
        "dnas-search: error: space=nope is not one of the space configs: "
        "apq_mbv2, cifar_mbv2, fmnist_mbv2"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["loss=nope"], "loss=nope is not one of the loss configs: abs, fbnet, hinge, lagrangian"),
        (["seed=1", "data=nope"], "data=nope is not one of the data configs"),
    ],
)
def test_check_overrides_names_the_group_and_its_configs(args, message, capsys):
    from dnas.cli.common import check_overrides

    with pytest.raises(SystemExit) as e:
        check_overrides("dnas-search", args)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    # paths, sweeps over names, additions and Hydra's own groups are Hydra's to judge
    check_overrides("dnas-search", ["space=/x/my.yaml", "data=a,b", "+x=1", "hydra/launcher=basic"])


@pytest.mark.parametrize(
    "prog, args, message",
    [
        ("dnas-lut", ["force=maybe"], "force must be true or false, got 'maybe'"),
        ("dnas-search", ["search.hard=maybe"], "search.hard must be true or false"),
        ("dnas-search", ["data.augment=1"], "data.augment must be true or false, got 1"),
        ("dnas-search", ["loss.lam=nan"], "loss.lam must be a finite number, got nan"),
        ("dnas-train", ["optimizer.momentum=nan"], "optimizer.momentum must be a finite number"),
        ("dnas-search", ["optimizer.weights.lr=inf"], "optimizer.weights.lr must be a finite"),
        ("dnas-search", ["data.mean=-inf"], "data.mean must be a finite number, got -inf"),
        ("dnas-search", ["seed=-1"], "seed must be an integer in [0, 2**32 - 1], got -1"),
        ("dnas-evolve", ["seed=4294967296"], "seed must be an integer in [0, 2**32 - 1]"),
        ("dnas-search", ["data.limit_val=32"], "data.limit_val is not a setting of dnas-search"),
        ("dnas-uniform", ["trainer.precision=x"], "trainer.precision is not a setting of"),
        ("dnas-search", ["hydra.run.dir="], "hydra.run.dir= is empty"),
        ("dnas-train", ["train.bn_batches=abc"], "train.bn_batches must be a number, got 'abc'"),
        ("dnas-search", ["search.tau0=hot"], "search.tau0 must be a number, got 'hot'"),
        ("dnas-lut", ["batch=[1]"], "batch takes one value (default 1), got a list: [1]"),
        ("dnas-search", ["search.tau0={a:1}"], "search.tau0 takes one value (default 5.0), got a"),
        ("dnas-train", ["train.label_smoothing=[0.1]"], "train.label_smoothing takes one value"),
        ("dnas-search", ["table.path=[a]"], "table.path takes one path, got ['a']"),
        ("dnas-search", ["ckpt_path={a:1}"], "ckpt_path takes one path, got {'a': 1}"),
    ],
)
def test_composed_config_is_checked_before_hydra(prog, args, message):
    from hydra.core.global_hydra import GlobalHydra

    from dnas.cli.common import CONFIG_NAMES, check_composed
    from dnas.errors import DnasError

    GlobalHydra.instance().clear()
    with pytest.raises(DnasError) as e:
        check_composed(prog, CONFIG_NAMES[prog], args)
    assert message in str(e.value)


def test_composed_check_keeps_what_is_allowed_and_protects_a_run(tmp_path):
    from hydra.core.global_hydra import GlobalHydra

    from dnas.cli.common import check_composed
    from dnas.errors import DnasError

    GlobalHydra.instance().clear()
    # booleans, finite numbers, a new key with +, sweeps and Hydra's flags pass
    check_composed("dnas-search", "search", ["search.hard=false", "loss.lam=0.5", "seed=7"])
    check_composed("dnas-search", "search", ["+trainer.precision=32", "experiment=quick"])
    check_composed("dnas-search", "search", ["trainer.devices=auto", "threads=2"])
    # a string default that stands for a list too (uniform.bits: auto or [4, 8])
    check_composed("dnas-uniform", "uniform", ["uniform.bits=[4,8]", "uniform.kernels=[3]"])
    check_composed("dnas-search", "search", ["-m", "seed=1,2"])
    check_composed("dnas-search", "search", ["seed=1,2", "search.hard=maybe"])  # a sweep
    run = tmp_path / "run"
    run.mkdir()
    (run / "arch.yaml").write_text("x")
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(DnasError, match="already holds a run"):
        check_composed("dnas-train", "train", [f"hydra.run.dir={run}"])
    with pytest.raises(DnasError, match="resume it with resume=, or overwrite"):
        check_composed("dnas-uniform", "uniform", [f"hydra.run.dir={run}"])
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written into it
    check_composed("dnas-train", "train", [f"hydra.run.dir={run}", "overwrite=true"])
    import torch

    torch.save({"state_dict": {}, "dnas_search": {}}, run / "last.ckpt")  # its own: allowed
    check_composed("dnas-search", "search", [f"hydra.run.dir={run}", f"ckpt_path={run}/last.ckpt"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(DnasError, match="is a file"):
        check_composed("dnas-search", "search", [f"hydra.run.dir={tmp_path / 'file'}"])
    with pytest.raises(DnasError, match=r"file/run: .*file is a file, not a directory"):
        check_composed("dnas-search", "search", [f"hydra.run.dir={tmp_path / 'file' / 'run'}"])


def test_a_bad_value_is_one_line_before_hydra_writes_anything(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    out = subprocess.run(
        [sys.executable, "-m", "dnas.cli.train", f"hydra.run.dir={run}", "arch=x"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "already holds a run" in out.stderr
    assert [p.name for p in run.iterdir()] == ["run.json"]  # no .hydra/ rewritten


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_sweep_directory_holding_runs_is_refused_before_hydra_writes(tmp_path):
    """`-m ... hydra.sweep.dir=` an earlier sweep: Hydra rewrote its multirun.yaml and every
    job's .hydra/ before each job refused, and the refusal said hydra.run.dir=."""
    sweep = tmp_path / "sweep"
    for job in ("0", "1"):
        (sweep / job / ".hydra").mkdir(parents=True)
        (sweep / job / ".hydra" / "config.yaml").write_text(f"seed: {job}\n")
        (sweep / job / "run.json").write_text("{}")
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    before = _tree(sweep)
    out = subprocess.run(
        [sys.executable, "-m", "dnas.cli.search", "-m", "seed=1,2", f"hydra.sweep.dir={sweep}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1, out.stderr
    assert "already holds a sweep's runs (in 0/, 1/)" in out.stderr
    assert "give another hydra.sweep.dir=" in out.stderr and "hydra.run.dir" not in out.stderr
    assert _tree(sweep) == before  # multirun.yaml and the jobs' .hydra/ untouched


def test_the_sweep_directory_check(tmp_path):
    from hydra.core.global_hydra import GlobalHydra

    from dnas.cli.common import check_composed

    GlobalHydra.instance().clear()
    sweep = tmp_path / "sweep"
    (sweep / "3").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")  # a sweep whose jobs all failed: fine
    check_composed("dnas-search", "search", ["-m", "seed=1,2", f"hydra.sweep.dir={sweep}"])
    (sweep / "3" / "arch.yaml").write_text("x")
    for argv in (
        ["-m", "seed=1,2", f"hydra.sweep.dir={sweep}"],
        ["experiment=pareto_sweep_independent", f"hydra.sweep.dir={sweep}"],  # sweeps itself
        ["--multirun", "seed=1", f"hydra.sweep.dir={sweep}"],
    ):
        with pytest.raises(DnasError, match=r"sweep's runs \(in 3/\).*hydra\.sweep\.dir="):
            check_composed("dnas-search", "search", argv)
    check_composed(
        "dnas-search", "search", ["-m", "seed=1,2", f"hydra.sweep.dir={sweep}", "overwrite=true"]
    )
    check_composed("dnas-search", "search", ["-m", "seed=1,2"])  # a new dir of its own
    check_composed("dnas-lut", "lut", ["-m", "batch=1,2", f"hydra.sweep.dir={sweep}"])  # no runs
    (tmp_path / "file").write_text("x")
    with pytest.raises(DnasError, match=r"hydra\.sweep\.dir=.* is a file"):
        check_composed(
            "dnas-search", "search", ["-m", "seed=1,2", f"hydra.sweep.dir={tmp_path / 'file'}"]
        )
    with pytest.raises(DnasError, match=r"hydra\.sweep\.dir= is empty"):
        check_composed("dnas-search", "search", ["-m", "seed=1,2", "hydra.sweep.dir="])


def test_a_jobs_refusal_names_the_sweep_key(tmp_path):
    """Inside a multirun job the run directory is named by hydra.sweep.dir=, not hydra.run.dir=."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict

    from dnas.cli.common import output_dir
    from tests.runs import compose_config

    job = tmp_path / "sweep" / "0"
    job.mkdir(parents=True)
    (job / "run.json").write_text("{}")
    cfg = compose_config("search", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.runtime.output_dir = str(job)
    HydraConfig.instance().set_config(cfg)
    try:
        with pytest.raises(DnasError, match=r"give another hydra\.sweep\.dir=, resume it"):
            output_dir(None, OmegaConf.create({"ckpt_path": None, "overwrite": False}))
    finally:
        HydraConfig.instance().cfg = None


def test_a_sweep_plugin_that_is_missing_says_pip_install(monkeypatch, capsys):
    from dnas.cli import common

    monkeypatch.setattr(common, "_importable", lambda module: False)
    for arg in ("hydra/launcher=parallel", "hparams_search=optuna", "hydra/launcher=slurm"):
        with pytest.raises(SystemExit) as e:
            common.check_overrides("dnas-search", ["-m", arg])
        assert e.value.code == 2
        assert f"{arg} needs Hydra's sweep plugins: pip install 'dnas[sweep]'" in (
            capsys.readouterr().err
        )
    monkeypatch.setattr(common, "_importable", lambda module: True)
    common.check_overrides("dnas-search", ["hparams_search=optuna"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["seed=abc"], "seed must be an integer, got 'abc'"),
        (["optimizer.weights.lr=-1"], "optimizer.weights: Invalid learning rate: -1"),
        (["+trainer.max_epoch=1"], "trainer.max_epoch is not an argument of "),
        (["+trainer.max_epoch=1"], "did you mean trainer.max_epochs?"),
        (["scheduler.T_max=0"], "scheduler.T_max must be a whole number of epochs >= 1"),
        # -1 was accepted: the cosine ran backwards, every other epoch at learning rate 0
        (["scheduler.T_max=-1"], "scheduler.T_max must be a whole number of epochs >= 1"),
    ],
)
def test_check_config_before_any_work(overrides, message):
    from dnas.cli.common import check_config
    from tests.runs import compose_config

    with pytest.raises(DnasError) as e:
        check_config(compose_config("search", *overrides))
    assert message in str(e.value)


def test_check_config_of_each_command():
    from dnas.cli.common import check_config
    from tests.runs import compose_config

    for name in ("search", "train", "evolve", "uniform"):
        check_config(compose_config(name, "arch=x") if name == "train" else compose_config(name))
    with pytest.raises(DnasError, match="optimizer: Invalid learning rate: -1"):
        check_config(compose_config("train", "optimizer.lr=-1"))


@pytest.mark.parametrize(
    "name, override",
    [
        ("search", "optimizer.weights.lr=0"),
        ("search", "optimizer.arch.lr=0.0"),
        ("train", "optimizer.lr=0"),
        ("evolve", "optimizer.weights.lr=0"),
        ("uniform", "optimizer.lr=0"),
    ],
)
def test_a_learning_rate_of_zero_is_refused(name, override):
    """torch takes lr=0: the run trained for its whole length and changed nothing."""
    from dnas.cli.common import check_config
    from tests.runs import compose_config

    key = override.partition("=")[0]
    extra = ["arch=x"] if name == "train" else []
    with pytest.raises(DnasError, match=rf"^{re.escape(key)} must be a learning rate > 0, got 0"):
        check_config(compose_config(name, *extra, override))
    check_config(compose_config(name, *extra, f"{key}=1e-6"))  # small is fine


def test_an_instantiation_type_error_is_the_configs_fault():
    from hydra.errors import InstantiationException

    wrapped = InstantiationException("Error in call to target 'X':\nTypeError(...)\nfull_key: data")
    wrapped.__cause__ = TypeError("'<' not supported between instances of 'str' and 'int'")
    err = user_error(wrapped)
    assert isinstance(err, DnasError)
    assert str(err) == "data: '<' not supported between instances of 'str' and 'int'"

    from lightning_fabric.utilities.exceptions import MisconfigurationException

    gpu = InstantiationException("Error in call to target 'Trainer':\nfull_key: trainer")
    gpu.__cause__ = MisconfigurationException("No supported gpu backend found!")
    assert str(user_error(gpu)) == "trainer: No supported gpu backend found!"
    other = InstantiationException("Error in call to target 'X'")
    other.__cause__ = RuntimeError("a bug")
    assert user_error(other) is None


def test_a_refused_run_leaves_no_empty_date_directory(tmp_path):
    run = tmp_path / "outputs" / "search" / "2026-12-03" / "07-17-09-7610"
    (run / ".hydra").mkdir(parents=True)
    keep = tmp_path / "outputs" / "train" / "2026-12-03" / "08-00-00-1"
    keep.mkdir(parents=True)
    discard_if_empty(run)
    assert not (tmp_path / "outputs" / "search").exists()
    assert keep.is_dir()  # others' directories stay
    elsewhere = tmp_path / "mine" / "run"
    (elsewhere / ".hydra").mkdir(parents=True)
    discard_if_empty(elsewhere)
    assert not elsewhere.exists() and (tmp_path / "mine").is_dir()  # a user's own directory


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"pmax_bits": 2, "pmin_bits": 4}, "pmin_bits"),
        ({"no_such_knob": 1}, "no_such_knob"),
    ],
)
def test_invalid_hardware_config_is_refused(changes, match):
    from dnas.cost.hardware import BitFusionConfig

    with pytest.raises(DnasError, match=match):
        BitFusionConfig.from_dict(changes)


def test_an_error_from_a_loader_worker_is_its_last_line(tmp_path):
    """A truncated image decoded in a DataLoader worker (data.num_workers > 0): torch re-raises
    the DatasetError with the worker's whole traceback in its message; the user sees one line."""
    from torch.utils.data import DataLoader, Dataset

    from dnas.cli.common import error_message
    from dnas.data.errors import DatasetError

    class Broken(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            raise DatasetError(f"{tmp_path}/cat/1.png: unreadable image (OSError: truncated)")

    with pytest.raises(DatasetError) as e:
        next(iter(DataLoader(Broken(), batch_size=2, num_workers=1)))
    assert "Original Traceback" in str(e.value)  # what torch gives
    assert error_message(e.value) == (
        f"{tmp_path}/cat/1.png: unreadable image (OSError: truncated)"
    )
    assert error_message(DnasError("plain\n  message")) == "plain message"


def test_a_space_given_as_a_yaml_file(tmp_path, capsys):
    """``space=$PWD/my.yaml`` (Hydra takes only config names): composed from the file."""
    import subprocess
    import sys
    from importlib import resources

    from dnas.cli.common import file_overrides

    text = (resources.files("dnas") / "conf" / "space" / "fmnist_mbv2.yaml").read_text()
    mine = tmp_path / "my space.yaml"
    mine.write_text(text.replace("name: fmnist_mbv2", "name: mine"))
    out = subprocess.run(
        [sys.executable, "-m", "dnas.cli.search", f"space={mine}", "seed=3", "--cfg", "job"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "name: mine" in out.stdout and "seed: 3" in out.stdout
    with pytest.raises(SystemExit) as e:
        file_overrides("dnas-search", [f"space={tmp_path / 'nope.yaml'}"])
    assert e.value.code == 2
    assert "nope.yaml: no such file" in capsys.readouterr().err
    args = file_overrides("dnas-search", ["seed=1", f"hardware={mine}"])
    assert args[0] == "seed=1" and args[1].startswith("hydra.searchpath=[file://")
    assert args[2] == "hardware=file_my_space"


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bin.yaml", b"\x8e\xf1\x00\x01", "space file {p} is not UTF-8 text (byte 0"),
        ("list.yaml", b"- a\n", "space={p} must hold a YAML mapping of space settings, got list"),
        ("noext", b"notes\n", "space={p} must hold a YAML mapping of space settings, got str"),
        ("bad.yaml", b"a: [\n", "space={p}: not valid YAML"),
        ("adir", None, "space={p} is a directory; give a YAML file"),
        ("empty.yaml", b"", "space={p} must hold a YAML mapping of space settings, got an empty"),
        ("missing", False, "space={p}: no such file"),
    ],
)
def test_a_space_file_of_the_wrong_kind_is_one_line(tmp_path, capsys, name, content, message):
    """A binary file, a list, text, a path without .yaml (Hydra: "Could not find
    'space//tmp/...'") or a directory as space=: one line, before Hydra (it was a 55-line
    UnicodeDecodeError traceback for the binary file)."""
    from dnas.cli.common import file_overrides

    p = tmp_path / name
    if content is None:
        p.mkdir()
    elif content is not False:
        p.write_bytes(content)
    with pytest.raises(SystemExit) as e:
        file_overrides("dnas-lut", [f"space={p}"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("dnas-lut: error: ") and message.format(p=p) in err, err
    assert len(err.strip().splitlines()) == 1


def test_files_that_are_not_text_are_one_line_everywhere(tmp_path):
    """The YAML and CSV readers of every command share dnas.errors.read_text: a binary file,
    a directory, named with what it was given as (each was a UnicodeDecodeError traceback)."""
    from dnas.cli.evolve import read_predictor_data
    from dnas.cost.hardware import load_hardware
    from dnas.cost.table import TableError, import_csv
    from dnas.errors import DnasError
    from dnas.space import Architecture, load_space

    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\x8e\xf1 binary \x00")
    space = load_space("fmnist_mbv2")
    cases = [
        (lambda: Architecture.load(binary), "architecture file"),
        (lambda: load_space(binary), "search space"),
        (lambda: load_hardware(binary), "hardware config"),
        (lambda: import_csv(binary, space, "dev"), "measured_csv"),
        (lambda: read_predictor_data(binary, None), "predictor.data"),
    ]
    for load, what in cases:
        with pytest.raises(DnasError) as e:
            load()
        assert f"{what} {binary} is not UTF-8 text (byte 0: invalid start byte)" in str(e.value)
    with pytest.raises(DnasError, match=r"hardware config .* is a directory"):
        load_hardware(tmp_path)
    with pytest.raises(TableError, match=r"measured_csv .* is a directory; give a CSV file"):
        import_csv(tmp_path, space, "dev")
    with pytest.raises(DnasError, match=r"architecture file .* is a directory"):
        Architecture.load(tmp_path)


def test_a_stopped_run_is_marked_incomplete_until_it_finishes(tmp_path, capsys):
    """A run stopped by a signal keeps its checkpoint and says in INCOMPLETE.txt that it is not
    a finished run; resumed into the same directory and finished, the marker goes."""
    from hydra.core.hydra_config import HydraConfig

    from dnas.cli.common import INCOMPLETE
    from tests.runs import compose_config

    cfg = compose_config("search")
    cfg.hydra.runtime.output_dir = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    try:
        with pytest.raises(SystemExit) as e:
            run_command("dnas-x", lambda c: (_ for _ in ()).throw(Interrupted("stopped", 143)), cfg)
        assert e.value.code == 143
        assert "stopped" in (tmp_path / INCOMPLETE).read_text()
        assert run_command("dnas-x", lambda c: 0.9, cfg) == 0.9
        assert not (tmp_path / INCOMPLETE).exists()
    finally:
        HydraConfig.instance().cfg = None


@pytest.mark.parametrize("terminated, code", [(True, 143), (False, 130)])
def test_a_signal_before_the_run_handles_it_is_one_line(capsys, monkeypatch, terminated, code):
    """SIGTERM (the handler ``hydra_entry`` installs raises ``Terminated``) or Ctrl-C during
    start-up, the table or the data: one line and 143 / 130, no traceback."""
    from dnas.cli.common import Terminated, hydra_entry, run_command

    def stop(*args):
        raise Terminated() if terminated else KeyboardInterrupt()

    with pytest.raises(SystemExit) as e:
        run_command("dnas-search", stop, None)
    assert e.value.code == code
    name = "SIGTERM" if terminated else "an interrupt"
    err = capsys.readouterr().err
    assert (
        err
        == f"dnas-search: stopped by {name} before its first checkpoint; no result was written\n"
    )
    import signal

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(sys, "argv", ["dnas-search"])
    try:
        with pytest.raises(SystemExit) as e:
            hydra_entry("dnas-search", stop)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert e.value.code == code
    assert capsys.readouterr().err == f"dnas-search: stopped by {name}; no result was written\n"


def test_the_early_sigterm_handler_leaves_a_fitting_run_to_lightning():
    """Lightning keeps the previous SIGTERM handler in its chain while it fits: called from
    there, the early handler does nothing (Lightning stops at a safe point and the run names its
    checkpoint); called by the interpreter it raises ``Terminated``."""
    import signal

    from pytorch_lightning.trainer.connectors.signal_connector import _HandlersCompose

    from dnas.cli.common import Terminated, raise_terminated

    noted = []
    _HandlersCompose([lambda s, f: noted.append(s), raise_terminated])(signal.SIGTERM, None)
    assert noted == [signal.SIGTERM]
    with pytest.raises(Terminated):
        raise_terminated(signal.SIGTERM, None)


def test_a_checkpoint_of_another_command_is_named_before_hydra(tmp_path):
    """dnas-search ckpt_path= a dnas-train checkpoint was refused only after Hydra rewrote the
    run's .hydra/ and appended to its log; dnas-train's refusal came after BN re-estimation and
    a test pass, saying only "no 'dnas_train' state"."""
    import torch
    from hydra.core.global_hydra import GlobalHydra

    from dnas.cli.common import CHECKPOINT_KEYS, check_composed
    from dnas.errors import DnasError
    from dnas.search.module import SearchModule
    from dnas.train.module import ChildModule

    assert {
        "search": SearchModule.checkpoint_key,
        "train": ChildModule.checkpoint_key,
    } == CHECKPOINT_KEYS
    GlobalHydra.instance().clear()
    train_ckpt, search_ckpt = tmp_path / "train.ckpt", tmp_path / "search.ckpt"
    torch.save({"state_dict": {}, "dnas_train": {"epoch": 1}}, train_ckpt)
    torch.save({"state_dict": {}, "dnas_search": {"epoch": 1}}, search_ckpt)
    for prog, name, ckpt, other in (
        ("dnas-search", "search", train_ckpt, "a dnas-train checkpoint"),
        ("dnas-train", "train", search_ckpt, "a dnas-search checkpoint"),
    ):
        with pytest.raises(DnasError) as e:
            check_composed(prog, name, [f"ckpt_path={ckpt}"])
        assert f"ckpt_path={ckpt} is {other}, not one of {prog}" in str(e.value)
    check_composed("dnas-search", "search", [f"ckpt_path={search_ckpt}"])  # its own: fine
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(DnasError, match="is not a dnas checkpoint, not one of dnas-train"):
        check_composed("dnas-train", "train", [f"ckpt_path={tmp_path / 'plain.ckpt'}"])
    with pytest.raises(FileNotFoundError, match="no such file"):
        check_composed("dnas-train", "train", [f"ckpt_path={tmp_path / 'missing.ckpt'}"])


def test_every_console_script_goes_through_the_interrupt_guard():
    import re
    from pathlib import Path

    from dnas.cli.entry import COMMANDS

    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    scripts = dict(re.findall(r'^(dnas-[a-z]+) = "([^"]+)"$', section, flags=re.M))
    assert scripts == {prog: f"dnas.cli.entry:{name}" for prog, name in COMMANDS.items()}


@pytest.mark.parametrize("prog, args", [("dnas-cost", ["eval"]), ("dnas-export", ["."])])
def test_ctrl_c_while_a_command_still_imports_is_one_line(tmp_path, prog, args):
    """Ctrl-C in the first second (torch still importing) was a 11-56-line traceback."""
    import signal
    import subprocess
    import sys
    import time

    code = (
        f"import sys; sys.argv = {[prog, *args]!r}; from dnas.cli.entry import run; run({prog!r})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    time.sleep(0.3)  # the interpreter is up; dnas.cli.* (torch, ...) is being imported
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip() == f"{prog}: stopped by an interrupt (Ctrl-C)"


def test_non_ascii_values_are_quoted_for_hydra():
    """data.root=/tmp/ünï was Hydra's five-line LexerNoViableAltException."""
    from hydra.core.global_hydra import GlobalHydra

    from dnas.cli.common import check_composed, quote_non_ascii

    args = quote_non_ascii(["prog", "data.root=/tmp/ünï", "seed=1", "x='ä'", "y=[ä]", "-m"])
    assert args == ["prog", "data.root='/tmp/ünï'", "seed=1", "x='ä'", "y=[ä]", "-m"]
    GlobalHydra.instance().clear()
    check_composed("dnas-search", "search", args[1:2])  # Hydra parses the quoted form


def test_an_unreadable_checkpoint_says_why_in_a_few_words(tmp_path):
    """torch's own text (a miniz page, the weights_only page) was cut mid-sentence into it."""
    import torch

    from dnas.checkpoint import CheckpointError, read_checkpoint

    torch.save({"state_dict": {"w": torch.zeros(1000)}}, tmp_path / "full.ckpt")
    data = (tmp_path / "full.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    (tmp_path / "arch.yaml").write_text("blocks: []\n")
    for name, why in (("cut.ckpt", "truncated or damaged"), ("arch.yaml", "not a file torch.save")):
        with pytest.raises(CheckpointError) as e:
            read_checkpoint(tmp_path / name)
        text = str(e.value)
        assert f"is not a readable dnas checkpoint ({why}" in text, text
        assert "miniz" not in text and "weights_only" not in text


def test_a_write_the_file_system_refuses_is_one_line(monkeypatch, capsys):
    """A read-only folder or a dangling link where an output goes: 20-73-line tracebacks."""
    import dnas.cli.cost
    from dnas.cli.entry import run

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/ro/.o.csv.tmp")

    monkeypatch.setattr(dnas.cli.cost, "main", refuse)
    with pytest.raises(SystemExit) as e:
        run("dnas-cost")
    assert e.value.code == 2
    assert capsys.readouterr().err == "dnas-cost: error: Permission denied: /ro/.o.csv.tmp\n"
