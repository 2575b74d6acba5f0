"""dnas-fit (LightningCLI): its printed config round-trips into a run, fast_dev_run runs, bad input
fails before training, and its shipped default is the search dnas-search runs with no arguments."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dnas.cli.fit import build_cli, main
from dnas.space import Architecture
from tests.runs import FIT_TINY as TINY
from tests.runs import compose_config

ROOT = Path(__file__).resolve().parents[2]
RUN_FILES = ("arch.yaml", "supernet.pt", "space.yaml", "run.json", "history.json", "search.png")


@pytest.fixture
def in_tmp(tmp_path, cache_dir, monkeypatch) -> Path:
    """Run in ``tmp_path`` (the logger writes to ./outputs) with the session's table cache."""
    monkeypatch.setenv("DNAS_CACHE", str(cache_dir))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def print_config(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main([*args, "--print_config"])
    assert done.value.code in (0, None)
    return capsys.readouterr().out


def check_run_dir(out: Path) -> Architecture:
    """The files of a search; its architecture has its exact cost, within budget."""
    from dnas.cost.hardware import BitFusionConfig
    from dnas.cost.table import load_or_build
    from dnas.space import load_space

    for name in RUN_FILES:
        assert (out / name).is_file(), name
    arch = Architecture.load(out / "arch.yaml")
    space = load_space("fmnist_mbv2")
    table, _, built = load_or_build(space, BitFusionConfig())
    assert not built
    lat, en = table.arch_cost(space, arch)
    assert arch.metrics["latency_ms"] == pytest.approx(lat, rel=1e-9)
    assert arch.metrics["energy_mj"] == pytest.approx(en, rel=1e-9)
    assert lat <= arch.metrics["target_latency_ms"] * (1 + 1e-12)
    return arch


def test_print_config_round_trips_into_a_run(in_tmp, capsys):
    printed = print_config(["fit", *TINY], capsys)
    config = in_tmp / "search.yaml"
    config.write_text(printed)
    assert print_config(["fit", "--config", str(config)], capsys) == printed
    out = in_tmp / "run"
    main(
        ["fit", "--config", str(config), "--trainer.fast_dev_run=true", f"--outputs.dirpath={out}"]
    )
    arch = check_run_dir(out)
    assert "val_acc" in arch.metrics and "test_acc" not in arch.metrics  # fit only
    record = json.loads((out / "run.json").read_text())
    assert record["method"] == "dnas"
    assert record["config"]["model"]["target"]["latency_frac"] == 0.3
    assert record["config"]["data"]["class_path"] == "dnas.data.SyntheticDataModule"
    assert not any("config" in k for k in record["config"])


@pytest.mark.slow
def test_fast_dev_run_from_the_command_line(tmp_path, cache_dir):
    out = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dnas.cli.fit",
            "fit",
            "--trainer.fast_dev_run=true",
            *TINY,
            f"--outputs.dirpath={out}",
        ],
        cwd=tmp_path,
        env={**os.environ, "DNAS_CACHE": str(cache_dir)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "budget: latency_ms <=" in done.stderr
    check_run_dir(out)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model.target.latency_frac=null", "--model.target.latency_ms=0.0001"], "unreachable"),
        (["--model.space=no_such_space"], "unknown search space"),
        (["--seed_everything=-1"], r"--seed_everything must be an integer in \[0, 2\*\*32 - 1\]"),
        (["--model.front=[{}]"], r"front\[0\] sets no budget"),
        (["--trainer.max_epochs=0"], "max_epochs must be a positive whole number"),
        (["--trainer.max_epochs=-1"], "max_epochs must be a positive whole number"),
        (["--trainer.max_epochs=1"], "warmup_epochs=1 leaves no search epoch"),
        (["--model.bit_levels=fast"], "bit_levels='fast' is not one of"),
        (["--model.derive_depth=deep"], "derive_depth='deep' is not one of"),
        (["--model.weight_paths=all"], "weight_paths='all' is not one of"),
        (["--model.kernel_weights=split"], "kernel_weights='split' is not one of"),
        (["--model.test_bn_batches=-5"], r"test_bn_batches \(dnas-search: final.bn_batches\)"),
        (["--model.weight_scheduler.init_args.T_max=0"], "weight_scheduler: "),
        (["--model.weight_optimizer.init_args.lr=0"], r"weight_optimizer\.init_args\.lr must be"),
        (["--model.arch_optimizer.init_args.lr=0"], r"arch_optimizer\.init_args\.lr must be a l"),
    ],
)
def test_bad_input_fails_before_training(in_tmp, capsys, args, message):
    with pytest.raises(SystemExit) as done:
        main(["fit", *TINY, *args])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "dnas-fit: error:" in err and re.search(message, err)
    assert not (in_tmp / "outputs").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model.nope=1"], "unrecognized arguments: --model.nope=1"),
        (["--trainer.max_epochs=abc"], 'Parser key "trainer.max_epochs"'),
        (["--config", "missing.yaml"], "File does not exist"),
    ],
)
def test_bad_arguments_are_one_line_not_the_usage(in_tmp, capsys, args, message):
    with pytest.raises(SystemExit) as done:
        main(["fit", *args])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("dnas-fit: error: ") and message in err and "--help" in err


@pytest.mark.parametrize(
    "value, message",
    [
        ("notes.txt", "--model.space=notes.txt: space: notes.txt must hold a mapping, got str"),
        ("missing.yaml", "--model.space=missing.yaml: search space file not found"),
        ("adir", "--model.space=adir: search space adir is a directory"),
    ],
)
def test_a_space_file_that_is_not_a_space_is_named(in_tmp, capsys, value, message):
    """jsonargparse put the content of notes.txt into the name ('unknown search space
    \'notes\\n\''); the file is named instead, before any training."""
    (in_tmp / "notes.txt").write_text("notes\n")
    (in_tmp / "adir").mkdir()
    with pytest.raises(SystemExit) as done:
        main(["fit", *TINY, f"--model.space={value}"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("dnas-fit: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (in_tmp / "outputs").exists()


def test_an_outputs_dirpath_holding_a_run_or_a_file_is_refused_before_training(in_tmp, capsys):
    """--outputs.dirpath over a dnas-train run replaced its arch.yaml, run.json, ... (exit 0);
    over a file it failed with a traceback after the whole search."""
    run = in_tmp / "runs" / "train"
    run.mkdir(parents=True)
    (run / "arch.yaml").write_text("mine\n")
    (run / "model.pt").write_bytes(b"weights")
    (in_tmp / "ok.csv").write_text("a,b\n")
    for given, message in (
        (run, "already holds a run (arch.yaml, model.pt); it is not overwritten"),
        (in_tmp / "ok.csv", "ok.csv is a file; give a directory"),
    ):
        with pytest.raises(SystemExit) as done:
            main(["fit", *TINY, f"--outputs.dirpath={given}"])
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("dnas-fit: error: --outputs.dirpath") and message in err, err
        assert len(err.strip().splitlines()) == 1
    assert (run / "arch.yaml").read_text() == "mine\n" and sorted(os.listdir(run)) == [
        "arch.yaml",
        "model.pt",
    ]
    assert not (in_tmp / "outputs").exists()  # nothing that looks like a run


@pytest.mark.parametrize(
    "args, message",
    [
        (["--outputs.dirpath=notes.txt/run"], "--outputs.dirpath=notes.txt/run: notes.txt is a"),
        (["--trainer.logger.init_args.save_dir=notes.txt"], "CSVLogger save_dir=notes.txt: notes"),
        (["--trainer.logger.init_args.save_dir=notes.txt/logs"], "save_dir=notes.txt/logs: notes"),
        (
            ["--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.dirpath=notes.txt/ck"],
            "--trainer.callbacks ModelCheckpoint dirpath=",
        ),
        (
            [
                "--trainer.callbacks+=dnas.checkpoint.LastCheckpoint",
                "--trainer.callbacks.path=notes.txt/last.ckpt",
            ],
            "--trainer.callbacks LastCheckpoint path=notes.txt/last.ckpt: notes.txt is a",
        ),
    ],
    ids=["outputs", "save_dir", "save_dir_under", "model_checkpoint", "last_checkpoint"],
)
def test_a_folder_it_cannot_write_is_refused_before_training(in_tmp, capsys, args, message):
    """A checkpoint dirpath, outputs.dirpath or logger save_dir under a file (or read-only):
    the run failed where it first wrote there, after an epoch or after the whole search."""
    (in_tmp / "notes.txt").write_text("mine\n")
    with pytest.raises(SystemExit) as done:
        main(["fit", *TINY, "--trainer.max_epochs=2", "--model.warmup_epochs=1", *args])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("dnas-fit: error: ") and message in err, err
    assert "is a file, not a directory" in err and len(err.strip().splitlines()) == 1
    assert "Epoch" not in err and not (in_tmp / "outputs" / "version_0" / "metrics.csv").exists()
    assert (in_tmp / "notes.txt").read_text() == "mine\n"


@pytest.mark.parametrize("sub", ["test", "validate"])
def test_testing_without_a_checkpoint_is_refused_and_writes_nothing(in_tmp, capsys, sub):
    """It derived and wrote arch.yaml, supernet.pt, ... from the untrained supernet, exit 0."""
    with pytest.raises(SystemExit) as done:
        main([sub, *TINY])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert f"dnas-fit: error: dnas-fit {sub} needs --ckpt_path" in err
    assert len(err.strip().splitlines()) == 1
    assert not (in_tmp / "outputs").exists()


def test_a_ckpt_path_that_is_not_a_lightning_checkpoint_is_one_line(in_tmp, capsys):
    import torch

    torch.save({"w": torch.zeros(2)}, in_tmp / "supernet.pt")  # a state dict, as supernet.pt
    (in_tmp / "cut.ckpt").write_bytes(b"PK\x03\x04 truncated")
    for path, why in (("supernet.pt", "is not a Lightning checkpoint"), ("cut.ckpt", "readable")):
        for form in (["--ckpt_path", path], [f"--ckpt_path={path}"]):
            with pytest.raises(SystemExit) as done:
                main(["test", *form])
            assert done.value.code == 2
            err = capsys.readouterr().err
            assert len(err.strip().splitlines()) == 1 and why in err and path in err
    assert not (in_tmp / "outputs").exists()


def test_a_logger_version_that_holds_a_run_is_refused_in_one_line(in_tmp, capsys):
    run = in_tmp / "outputs" / "fit" / "version_0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("mine\n")
    with pytest.raises(SystemExit) as done:
        main(["fit", *TINY, "--trainer.logger.init_args.version=0"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1].startswith("dnas-fit: error: ") and "already holds a run (config.yaml)" in err[-1]
    )
    assert "Traceback" not in "\n".join(err)
    assert (run / "config.yaml").read_text() == "mine\n"


def test_version_and_help(capsys):
    from dnas import __version__
    from dnas.cli.fit import SUBCOMMAND_HELP

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code in (0, None)
    assert capsys.readouterr().out.strip() == f"dnas-fit {__version__}"
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code in (0, None)
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for line in SUBCOMMAND_HELP.values():
        assert " ".join(line.split()) in out
    assert "make sure you never run on your" not in out  # Lightning's cut-off line


def test_default_config_is_the_default_hydra_search(in_tmp):
    """The two CLIs build the same module, data module and trainer from their defaults."""
    from hydra.utils import instantiate

    from dnas.cli.search import search_module
    from dnas.cost.hardware import BitFusionConfig
    from dnas.cost.table import load_or_build
    from dnas.space import SearchSpace

    cli = build_cli([], run=False)
    cfg = compose_config("search")
    hw = BitFusionConfig.from_dict(OmegaConf.to_container(cfg.hardware, resolve=True))
    space = SearchSpace.from_dict(OmegaConf.to_container(cfg.space, resolve=True))
    table, _, _ = load_or_build(space, hw)
    hydra, fit = search_module(cfg, space, hw, table), cli.model

    assert fit.space == hydra.space and fit.space.name == "fmnist_mbv2"
    assert fit.table.header.content_hash == hydra.table.header.content_hash
    assert fit.front == hydra.front and fit.front[0].latency_ms is not None  # latency_frac 0.3
    for a, b in zip(fit.budgets, hydra.budgets):
        assert (a.kind, a.alpha, a.beta, a.eta) == (b.kind, b.alpha, b.beta, b.eta)
        assert torch.equal(a.lam, b.lam)
    assert dict(fit.hparams) == dict(hydra.hparams)
    assert (fit.bn_batches, fit.test_bn_batches) == (hydra.bn_batches, hydra.test_bn_batches)
    (fit_opts, fit_scheds), (hydra_opts, hydra_scheds) = (
        fit.configure_optimizers(),
        hydra.configure_optimizers(),
    )
    for a, b in zip(fit_opts, hydra_opts, strict=True):
        assert type(a) is type(b) and a.defaults == b.defaults  # lr, momentum, betas, ...
    fit_sched, hydra_sched = fit_scheds[0]["scheduler"], hydra_scheds[0]["scheduler"]
    assert type(fit_sched) is type(hydra_sched) and fit_sched.T_max == hydra_sched.T_max

    data = instantiate(cfg.data)
    fit_data = {k: v for k, v in cli.datamodule.hparams.items() if not k.startswith("_")}
    assert type(cli.datamodule) is type(data) and fit_data == dict(data.hparams)  # no CLI keys
    for key in ("max_epochs", "log_every_n_steps", "num_sanity_val_steps"):
        assert getattr(cli.trainer, key) == cfg.trainer[key], key
    assert cli.config["seed_everything"] == cfg.seed


@pytest.mark.slow
def test_fit_and_search_give_the_same_run(tmp_path, cache_dir, monkeypatch, capsys):
    """Both CLIs on the same small search: the same architecture, history and accuracy; the
    outputs callback writes the same files, and ``dnas-fit test`` adds the test accuracy."""
    from dnas.cli.search import run
    from tests.runs import SEARCH_BASE

    monkeypatch.setenv("DNAS_CACHE", str(cache_dir))
    monkeypatch.chdir(tmp_path)
    searched = tmp_path / "search"
    run(compose_config("search", *SEARCH_BASE, "target.latency_frac=0.2"), output_dir=searched)

    fitted = tmp_path / "fit"
    small = [
        *TINY,
        "--trainer.max_epochs=2",
        "--model.warmup_epochs=1",
        "--model.target.latency_frac=0.2",
        "--model.weight_scheduler.init_args.T_max=2",
        f"--outputs.dirpath={fitted}",
    ]
    main(["fit", *small])
    before_test = Architecture.load(fitted / "arch.yaml")
    (ckpt,) = (tmp_path / "outputs" / "fit").glob("version_*/checkpoints/last.ckpt")
    main(["test", *small, f"--ckpt_path={ckpt}"])

    a, b = Architecture.load(searched / "arch.yaml"), check_run_dir(fitted)
    assert a.blocks == b.blocks and (a.stem, a.last, a.classifier) == (b.stem, b.last, b.classifier)
    assert before_test.blocks == b.blocks and "test_acc" not in before_test.metrics
    assert a.metrics == pytest.approx(b.metrics)  # exact cost, target, val_acc, test_acc
    history = [json.loads((d / "history.json").read_text()) for d in (searched, fitted)]
    assert len(history[0]) == len(history[1]) == 2
    for a, b in zip(*history):
        assert a == pytest.approx(b)


def test_the_classifier_takes_the_datas_classes(tmp_path, monkeypatch, capsys):
    """A 3-class data module gets a 3-way classifier, priced by a 3-class table, as in
    dnas-search (``fit_classes_to_data``); before, the run stopped at the class-count check."""
    import yaml

    from dnas.cost.hardware import BitFusionConfig
    from dnas.cost.table import load_or_build
    from dnas.space import LayerKey, SearchSpace
    from dnas.train.load import SPACE_FILE
    from tests.data.test_imagefolder import write_folder

    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    # a smaller grid (2 kernels, 2 bit-widths) keeps the 3-class table quick to build
    shipped = resources.files("dnas").joinpath("conf/space/fmnist_mbv2.yaml").read_text()
    small = yaml.safe_load(shipped) | {"kernels": [3, 5], "bits": [4, 8]}
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(small))
    out = tmp_path / "run"
    args = ["fit", *TINY, "--model.space=small.yaml", "--data.num_classes=3"]
    main([*args, "--trainer.fast_dev_run=true", f"--outputs.dirpath={out}"])
    said = " ".join(capsys.readouterr().err.split())  # rich wraps lines
    assert "SyntheticDataModule has 3, so space fmnist_mbv2 gets a 3-way classifier" in said
    assert "(its config says 10)" in said

    space = SearchSpace.from_dict(yaml.safe_load((out / SPACE_FILE).read_text()))
    assert space.num_classes == 3 and space.blocks[0].kernels == (3, 5)
    heads = [
        v
        for k, v in torch.load(out / "supernet.pt", weights_only=True).items()
        if k.startswith("classifier") and k.endswith("weight")
    ]
    assert heads and all(w.shape[0] == 3 for w in heads)
    table, _, built = load_or_build(space, BitFusionConfig())
    assert not built and table.entries[LayerKey("classifier")].widths == (3,)
    arch = Architecture.load(out / "arch.yaml")
    assert arch.metrics["latency_ms"] == pytest.approx(table.arch_cost(space, arch)[0], rel=1e-9)
    # the class count is the data's to set: the printed config does not carry it
    assert "num_classes" not in yaml.safe_load(print_config(args, capsys))["model"]

    # an image folder (not an in-memory data set) is a data module dnas-fit takes, too
    folder = write_folder(tmp_path / "folder")
    out = tmp_path / "folder_run"
    main(
        [
            "fit",
            *[a for a in TINY if not a.startswith("--data")],
            "--model.space=small.yaml",
            "--data=dnas.data.ImageFolderDataModule",
            f"--data.root={folder}",
            "--data.image_size=28",
            "--data.channels=1",
            "--data.mean=[0.5]",
            "--data.std=[0.25]",
            "--data.batch_size=6",
            "--data.num_workers=0",
            "--trainer.fast_dev_run=true",
            f"--outputs.dirpath={out}",
        ]
    )
    said = " ".join(capsys.readouterr().err.split())
    assert "ImageFolderDataModule has 3, so space fmnist_mbv2 gets a 3-way classifier" in said
    assert SearchSpace.from_dict(yaml.safe_load((out / SPACE_FILE).read_text())) == space
    assert Architecture.load(out / "arch.yaml").metrics["latency_ms"] > 0


def test_num_classes_must_be_a_class_count():
    from dnas.errors import DnasError
    from dnas.search.module import SearchModule

    with pytest.raises(DnasError, match="num_classes must be an integer >= 2 or None, got 1"):
        SearchModule(
            weight_optimizer=torch.optim.SGD,
            arch_optimizer=torch.optim.Adam,
            budget=lambda t: None,
            num_classes=1,
        )


@pytest.mark.slow
def test_a_signal_stops_fit_naming_the_checkpoint(tmp_path, cache_dir):
    """SIGTERM (Slurm, docker stop) as in dnas-search: 143, a message naming the last checkpoint
    and how to resume, and no result written (it exited 0 and said nothing). Ctrl-C takes the
    same path (``interrupted``: 130)."""
    sig, code = 15, 143
    from tests.search.test_resume import _stop_after

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dnas.cli.fit",
            "fit",
            *TINY,
            "--data.num_train=1024",
            "--data.batch_size=16",
            "--trainer.max_epochs=4",
            "--model.weight_scheduler.init_args.T_max=4",
        ],
        cwd=tmp_path,
        env={**os.environ, "DNAS_CACHE": str(cache_dir), "TRITON_INTERPRET": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = Path("outputs") / "fit" / "version_0"  # relative to the working directory
    ckpt = run / "checkpoints" / "last.ckpt"
    returncode, err = _stop_after(proc, tmp_path / ckpt, 1, sig)
    assert returncode == code, err[-3000:]
    assert f"--ckpt_path {ckpt}" in err and f"--config {run / 'config.yaml'}" in err
    assert not (tmp_path / run / "arch.yaml").exists()
    marker = (tmp_path / run / "INCOMPLETE.txt").read_text()
    assert "not a finished run" in marker and "--ckpt_path" in marker
