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
