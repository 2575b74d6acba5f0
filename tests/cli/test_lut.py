"""dnas-lut: every Hydra config composes; the table is built, cached, and summarised."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from dnas.cli.lut import run
from dnas.cost.hardware import BitFusionConfig, builtin_hardware_names
from dnas.cost.table import CostTable
from dnas.space import SearchSpace, builtin_space_names, load_space


def cfg_for(*overrides):
    with initialize_config_module("dnas.conf", version_base="1.3"):
        return compose("lut", overrides=list(overrides))


@pytest.mark.parametrize("space", builtin_space_names())
@pytest.mark.parametrize("hardware", builtin_hardware_names())
def test_every_space_and_hardware_config_composes(space, hardware):
    cfg = cfg_for(f"space={space}", f"hardware={hardware}")
    s = SearchSpace.from_dict(OmegaConf.to_container(cfg.space, resolve=True))
    assert s.fingerprint() == load_space(space).fingerprint()
    BitFusionConfig.from_dict(OmegaConf.to_container(cfg.hardware, resolve=True))


def test_run_builds_then_loads_cached(tmp_path):
    out = tmp_path / "t.pt"
    first = run(cfg_for(f"out={out}", "backend=torch"))
    assert out.is_file()
    table = CostTable.load(out, load_space("fmnist_mbv2"), BitFusionConfig())
    assert first["entries"] == table.num_entries == load_space("fmnist_mbv2").num_grid_entries
    second = run(cfg_for(f"out={out}"))
    assert second == {**first, "seconds": second["seconds"]}


def test_space_override_from_command_line(tmp_path):
    out = tmp_path / "t.pt"
    res = run(cfg_for(f"out={out}", "space.bits=[4,8]", "backend=torch"))
    space = load_space("fmnist_mbv2")
    assert res["entries"] < space.num_grid_entries
    assert CostTable.load(out).header.space_fingerprint != space.fingerprint()


def test_cli_summary_and_bad_input(tmp_path):
    out = tmp_path / "t.pt"
    ok = subprocess.run(
        [sys.executable, "-m", "dnas.cli.lut", f"out={out}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert "cheapest / dearest" in ok.stdout and "22,053" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "dnas.cli.lut", f"out={tmp_path / 'b.pt'}", "space.bits=[2,16]"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2
    assert "bits" in bad.stderr and "16" in bad.stderr
    assert not (tmp_path / "b.pt").exists()


def test_export_then_import_measured_table(tmp_path):
    csv_path, out = tmp_path / "template.csv", tmp_path / "measured.pt"
    run(cfg_for(f"out={tmp_path / 't.pt'}", f"export_csv={csv_path}", "backend=torch"))
    res = run(cfg_for(f"measured_csv={csv_path}", "device_name=mydev", f"out={out}"))
    table = CostTable.load(out, load_space("fmnist_mbv2"))
    assert table.header.source == "measured" and table.header.hardware_name == "mydev"
    assert res["entries"] == load_space("fmnist_mbv2").num_grid_entries
