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
from dnas.errors import DnasError
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


# ---------------------------------------------- a file the user named is never replaced unasked
@pytest.fixture
def measured(tmp_path):
    """A measured table imported at ``tmp_path/pixel8.pt`` (from an exported template)."""
    csv_path, out = tmp_path / "template.csv", tmp_path / "pixel8.pt"
    run(cfg_for(f"out={tmp_path / 't.pt'}", f"export_csv={csv_path}", "backend=torch"))
    run(cfg_for(f"measured_csv={csv_path}", "device_name=pixel8", f"out={out}"))
    return out


def test_a_measured_table_is_not_rebuilt_over(measured):
    before = measured.read_bytes()
    with pytest.raises(DnasError, match=r"measured cost table \(device 'pixel8'.*force=true"):
        run(cfg_for("space=cifar_mbv2", f"out={measured}", "backend=torch"))
    assert measured.read_bytes() == before
    # the same space: it is loaded, never rebuilt as a BitFusion table
    res = run(cfg_for(f"out={measured}"))
    assert CostTable.load(measured).header.source == "measured"
    assert measured.read_bytes() == before and res["entries"] > 0


def test_a_measured_table_is_not_imported_over(measured, tmp_path):
    before = measured.read_bytes()
    with pytest.raises(DnasError, match="already holds a measured cost table"):
        run(cfg_for(f"measured_csv={tmp_path / 'template.csv'}", f"out={measured}"))
    assert measured.read_bytes() == before


def test_a_measured_import_never_goes_into_the_cache(measured, tmp_path, monkeypatch):
    """Without out= it replaced the cached BitFusion table: every later default search priced
    its budget with the device's costs, still saying BitFusion."""
    from dnas.cost.hardware import load_hardware
    from dnas.cost.table import default_table_path

    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DnasError, match=r"measured_csv=.*needs out=FILE.*table\.path=FILE"):
        run(cfg_for(f"measured_csv={tmp_path / 'template.csv'}", "device_name=pixel8"))
    slot = default_table_path(load_space("fmnist_mbv2"), load_hardware("bitfusion"), 1)
    assert not slot.exists()


def test_a_table_of_other_hardware_is_not_replaced(tmp_path):
    out = tmp_path / "t.pt"
    run(cfg_for(f"out={out}", "backend=torch"))
    before = out.read_bytes()
    with pytest.raises(
        DnasError, match=r"cost table of space 'fmnist_mbv2' on 'bitfusion'.*hardware"
    ):
        run(cfg_for(f"out={out}", "hardware.freq_mhz=1000", "backend=torch"))
    assert out.read_bytes() == before
    run(cfg_for(f"out={out}", "hardware.freq_mhz=1000", "backend=torch", "force=true"))
    assert CostTable.load(out).header.hardware["freq_mhz"] == 1000


def test_a_text_file_is_not_replaced(tmp_path):
    notes = tmp_path / "n.txt"
    notes.write_text("notes\n")
    with pytest.raises(DnasError, match="not a dnas cost table"):
        run(cfg_for(f"out={notes}", "backend=torch"))
    assert notes.read_text() == "notes\n"


def test_the_csv_is_not_written_over_the_table_or_a_file(tmp_path):
    out = tmp_path / "keep.pt"
    with pytest.raises(DnasError, match="the table's own file"):
        run(cfg_for(f"out={out}", f"export_csv={out}", "backend=torch"))
    assert not out.exists()
    other = tmp_path / "other.csv"
    other.write_text("mine\n")
    with pytest.raises(DnasError, match=r"export_csv=.* already exists"):
        run(cfg_for(f"out={out}", f"export_csv={other}", "backend=torch"))
    assert other.read_text() == "mine\n" and not out.exists()


@pytest.mark.parametrize("key", ["out", "export_csv"])
def test_a_directory_is_refused(tmp_path, key):
    with pytest.raises(DnasError, match=f"{key}=.* is a directory"):
        run(cfg_for(f"{key}={tmp_path}", "backend=torch"))


@pytest.mark.parametrize("key", ["out", "export_csv"])
def test_a_path_under_a_file_is_refused_before_building(tmp_path, key):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DnasError, match=f"{key}=.*: .*notes.txt is a file, not a directory"):
        run(cfg_for(f"{key}={tmp_path / 'notes.txt' / 't.pt'}", "backend=torch"))
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.fixture
def no_build(monkeypatch):
    """Fail the test if a table is built (the checks must come first)."""
    import dnas.cost.table

    def build(*args, **kwargs):
        raise AssertionError("the table was built before the refusal")

    monkeypatch.setattr(dnas.cost.table, "build_table", build)


def _read_only(monkeypatch, folder):
    """``folder`` read-only as a non-root user sees it (tests run as root, who writes anywhere)."""
    import os

    access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda path, mode: False if str(path).startswith(str(folder)) else access(path, mode),
    )


def test_a_cache_it_cannot_write_is_refused_before_building(tmp_path, monkeypatch, no_build):
    """DNAS_CACHE under a file or read-only: dnas-lut (named it out=) and the training commands
    (a traceback) failed writing the table they had just built."""
    from dnas.cost.table import TableError, load_or_build

    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "notes.txt" / "cache"))
    message = r"DNAS_CACHE=.*notes.txt/cache: .*notes.txt is a file, not a directory; .*set DNAS_"
    with pytest.raises(DnasError, match=message):
        run(cfg_for("backend=torch"))
    with pytest.raises(TableError, match=message):
        load_or_build(load_space("fmnist_mbv2"), BitFusionConfig())
    (tmp_path / "ro").mkdir()
    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "ro"))
    _read_only(monkeypatch, tmp_path / "ro")
    with pytest.raises(DnasError, match=r"DNAS_CACHE=.*/ro: .*/ro is not writable"):
        run(cfg_for("backend=torch"))
    with pytest.raises(TableError, match=r"DNAS_CACHE=.*/ro: .*/ro is not writable"):
        load_or_build(load_space("fmnist_mbv2"), BitFusionConfig())
    assert (tmp_path / "notes.txt").read_text() == "mine" and not any((tmp_path / "ro").iterdir())


def test_a_read_only_cache_of_built_tables_is_read(tmp_path, monkeypatch):
    from dnas.cost.table import load_or_build

    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    space = load_space("fmnist_mbv2")
    cfg = cfg_for("space.bits=[8]", "backend=torch")
    assert run(cfg)["entries"] > 0
    _read_only(monkeypatch, tmp_path / "cache")
    assert run(cfg)["entries"] > 0  # loaded, nothing to write
    with pytest.raises(DnasError, match="is not writable"):  # built: refused before the work
        load_or_build(space, BitFusionConfig(), backend="torch")


def test_an_out_it_cannot_write_is_refused_before_building(tmp_path, monkeypatch, no_build):
    (tmp_path / "ro").mkdir()
    _read_only(monkeypatch, tmp_path / "ro")
    for key in ("out", "export_csv"):
        with pytest.raises(DnasError, match=rf"{key}=.*/ro/t\.\w+: .*/ro is not writable"):
            run(cfg_for(f"{key}={tmp_path / 'ro' / ('t.pt' if key == 'out' else 't.csv')}"))


def test_a_backend_that_cannot_run_is_refused_even_when_the_table_is_cached(tmp_path, monkeypatch):
    """backend=cuda (no such backend) was accepted whenever the table was cached, and so was
    triton on a machine that cannot run it."""
    import dnas.cost.backend
    from dnas.cost.table import load_or_build

    out = tmp_path / "t.pt"
    run(cfg_for(f"out={out}", "space.bits=[8]", "backend=torch"))
    space = SearchSpace.from_dict(
        OmegaConf.to_container(cfg_for("space.bits=[8]").space, resolve=True)
    )
    with pytest.raises(DnasError, match="unknown cost backend 'cuda'; allowed: auto, torch"):
        run(cfg_for(f"out={out}", "space.bits=[8]", "backend=cuda"))
    with pytest.raises(DnasError, match="unknown cost backend 'cuda'"):
        load_or_build(space, BitFusionConfig(), out, backend="cuda")  # the training commands
    monkeypatch.setattr(dnas.cost.backend, "triton_available", lambda: False)
    with pytest.raises(DnasError, match=r"the triton cost backend cannot run.*backend=torch"):
        run(cfg_for(f"out={out}", "space.bits=[8]", "backend=triton"))
    with pytest.raises(DnasError, match="the triton cost backend cannot run"):
        load_or_build(space, BitFusionConfig(), out, backend="triton")
    assert run(cfg_for(f"out={out}", "space.bits=[8]", "backend=auto"))["entries"] > 0


@pytest.mark.parametrize("name", ["", "  ", "null"])
def test_a_measured_table_needs_a_device_name(tmp_path, name):
    """device_name= (empty) made a table of hardware '' (`cost table: fmnist_mbv2 on `)."""
    csv_path = tmp_path / "template.csv"
    run(cfg_for(f"out={tmp_path / 't.pt'}", "space.bits=[8]", f"export_csv={csv_path}"))
    with pytest.raises(DnasError, match=r"device_name=.* must name the device"):
        run(
            cfg_for(
                "space.bits=[8]",
                f"measured_csv={csv_path}",
                f"device_name='{name}'" if name.strip() != "null" else "device_name=null",
                f"out={tmp_path / 'm.pt'}",
            )
        )
    assert not (tmp_path / "m.pt").exists()


def test_a_cache_under_the_home_directory_is_expanded(tmp_path, monkeypatch):
    """DNAS_CACHE='~/tables' (quoted, so the shell left the ~) made a folder named ~ here."""
    from dnas.cost.table import default_table_path, load_or_build

    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DNAS_CACHE", "~/dnas-cache")
    monkeypatch.chdir(here)
    space = SearchSpace.from_dict(
        OmegaConf.to_container(cfg_for("space.bits=[8]").space, resolve=True)
    )
    path = default_table_path(space, BitFusionConfig())
    assert path.parent == home / "dnas-cache" / "tables"
    run(cfg_for("space.bits=[8]", "backend=torch"))
    assert path.is_file() and not any(here.iterdir())
    assert load_or_build(space, BitFusionConfig())[1:] == (path, False)  # the training commands
