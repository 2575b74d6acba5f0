"""A run never writes into a directory that holds another run, unless it resumes it or is told to."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from dnas.cli.common import RUN_MARKERS, output_dir
from dnas.errors import DnasError
from tests.runs import TRAIN


@pytest.mark.parametrize("marker", RUN_MARKERS)
def test_a_directory_holding_a_run_is_refused(tmp_path, marker):
    (tmp_path / marker).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / marker).write_text("mine")
    with pytest.raises(DnasError, match=r"already holds a run .*overwrite=true"):
        output_dir(tmp_path, OmegaConf.create({"ckpt_path": None, "overwrite": False}))
    assert (tmp_path / marker).read_text() == "mine"


def test_resume_or_overwrite_may_write_there(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    for cfg in ({"ckpt_path": "x/last.ckpt"}, {"resume": str(tmp_path)}, {"overwrite": True}):
        assert output_dir(tmp_path, OmegaConf.create(cfg)) == tmp_path


def test_a_fresh_or_empty_directory_is_fine(tmp_path):
    assert output_dir(tmp_path / "new", OmegaConf.create({})).is_dir()
    (tmp_path / ".hydra").mkdir()  # what Hydra writes before the run starts
    assert output_dir(tmp_path, OmegaConf.create({})) == tmp_path


def test_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(DnasError, match="is a file"):
        output_dir(tmp_path / "f", OmegaConf.create({}))


def test_train_into_a_finished_run_keeps_it(train_run, cache_dir, search_run):
    """The README's pipeline run twice into the same directory: the second is refused whole."""
    from dnas.cli.train import run
    from tests.runs import compose_config

    before = {p.name: p.read_bytes() for p in train_run.iterdir() if p.is_file()}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DNAS_CACHE", str(cache_dir))
        with pytest.raises(DnasError, match="already holds a run"):
            run(compose_config("train", *TRAIN, f"arch={search_run}"), output_dir=train_run)
    assert {p.name: p.read_bytes() for p in train_run.iterdir() if p.is_file()} == before


def _run_of(path, method=None, *files):
    path.mkdir(parents=True, exist_ok=True)
    if method is not None:
        (path / "run.json").write_text(f'{{"method": "{method}"}}')
    for name in files:
        (path / name).write_text("x")
    return path


def test_overwrite_replaces_a_run_of_the_same_command_only(tmp_path):
    """dnas-train overwrite=true into a search's directory replaced its arch.yaml, run.json and
    checkpoint beside its supernet.pt, search.png, ...: a mix of two runs."""
    from hydra.core.global_hydra import GlobalHydra

    from dnas.cli.common import check_composed

    GlobalHydra.instance().clear()
    search = _run_of(tmp_path / "search", "dnas", "arch.yaml", "supernet.pt")
    train = _run_of(tmp_path / "train", "train", "arch.yaml", "model.pt")
    old_search = _run_of(tmp_path / "old", None, "arch.yaml", "supernet.pt")  # no run.json
    evolved = _run_of(tmp_path / "evolved", "evolution_predictor", "arch.yaml")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    refused = [
        ("dnas-train", "train", search, "holds a dnas-search run; overwrite=true replaces a"),
        ("dnas-train", "train", old_search, "holds a dnas-search run"),
        ("dnas-search", "search", train, "holds a dnas-train run"),
        ("dnas-evolve", "evolve", search, "holds a dnas-search run"),
        ("dnas-search", "search", evolved, "holds a dnas-evolve run"),
    ]
    for prog, name, run, message in refused:
        with pytest.raises(DnasError, match=rf"{message}.*give a new hydra\.run\.dir="):
            check_composed(prog, name, [f"hydra.run.dir={run}", "overwrite=true"])
    check_composed("dnas-train", "train", [f"hydra.run.dir={train}", "overwrite=true"])
    check_composed("dnas-search", "search", [f"hydra.run.dir={search}", "overwrite=true"])
    check_composed("dnas-evolve", "evolve", [f"hydra.run.dir={evolved}", "overwrite=true"])
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_jobs_own_directory_is_checked_for_the_command_too(tmp_path):
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from tests.runs import compose_config

    search = _run_of(tmp_path / "search", "dnas", "arch.yaml", "supernet.pt")
    cfg = compose_config("train", "arch=x")
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(search)
        cfg.hydra.job.config_name = "train"
    HydraConfig.instance().set_config(cfg)
    try:
        with pytest.raises(DnasError, match="holds a dnas-search run"):
            output_dir(None, OmegaConf.create({"overwrite": True}))
        child = tmp_path / "child"  # a child run another command trains (dnas-uniform's)
        assert output_dir(child, OmegaConf.create({"overwrite": True})) == child
    finally:
        HydraConfig.instance().cfg = None


def test_every_method_names_its_command():
    from dnas.cli.common import COMMAND_OF_METHOD
    from dnas.cli.evolve import METHODS

    assert {COMMAND_OF_METHOD[m] for m in METHODS.values()} == {"evolve"}
