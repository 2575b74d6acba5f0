"""dnas-cost eval: CSV in, CSV out, exact; bad rows named by line and field; no partial output."""

from __future__ import annotations

import csv
import importlib.util

import pytest

from dnas.cli.cost import main
from tests.conftest import DATA


def test_eval_reproduces_simulator_examples(tmp_path):
    out = tmp_path / "out.csv"
    assert main(["eval", str(DATA / "bitfusion_examples.csv"), "-o", str(out)]) == 0
    want = read_rows(DATA / "bitfusion_examples.csv")
    got = read_rows(out)
    assert len(got) == len(want)
    for w, g in zip(want, got):
        assert g["layer_name"] == w["layer_name"]  # extra columns carried through
        for col in (
            "cycles",
            "compute_cycles",
            "mem_stall_cycles",
            "dram_read_bits",
            "dram_write_bits",
            "best_loop_order",
        ):
            assert g[col] == w[col], col
        assert float(g["total_energy_nJ"]) == pytest.approx(float(w["total_energy_nJ"]), rel=1e-9)
        assert g["best_tiling"].replace(" ", "") == w["best_tiling"].replace(" ", "")


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write(path, text):
    path.write_text(text)
    return str(path)


HEADER = "in_channels,out_channels,kernel_size,stride,output_h,batch,w_bits,a_bits"


@pytest.mark.parametrize(
    "body, message",
    [
        ("8,8,1,1,4,1,8,8\n8,8,1,1,4,1,x,8\n", "bad.csv:3: field 'w_bits' must be an integer"),
        ("8,8,1,1,4,1,16,8\n", "bad.csv:2: field 'w_bits'=16 exceeds"),
        ("8,8,1,1,0,1,8,8\n", "bad.csv:2: output_h must be a positive integer"),
        ("1_6,8,1,1,4,1,8,8\n", "bad.csv:2: field 'in_channels' must be an integer, got '1_6'"),
        ("8,8,1,1,4\n", "bad.csv:2: no field 'batch': the row has fewer fields than the header"),
    ],
)
def test_bad_rows_named_and_no_output(tmp_path, capsys, body, message):
    out = tmp_path / "out.csv"
    assert main(["eval", write(tmp_path / "bad.csv", HEADER + "\n" + body), "-o", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "bad.csv"]


def test_groups_and_im2col_columns(tmp_path):
    src = write(
        tmp_path / "in.csv",
        HEADER + ",groups,im2col,note\n"
        "32,32,3,1,14,1,8,8,32,0,dw\n3,16,3,2,14,1,8,8,1,1,stem\n32,32,3,1,14,1,8,8,4,0,g\n",
    )
    out = tmp_path / "out.csv"
    assert main(["eval", src, "-o", str(out)]) == 2  # groups=4 is neither dense nor depthwise
    assert not out.exists()
    src = write(
        tmp_path / "in.csv",
        HEADER + ",groups,im2col,note\n32,32,3,1,14,1,8,8,32,0,dw\n3,16,3,2,14,1,8,8,1,1,stem\n",
    )
    assert main(["eval", src, "-o", str(out)]) == 0
    rows = read_rows(out)
    assert [r["note"] for r in rows] == ["dw", "stem"]
    assert '"C/c"' in rows[0]["best_tiling"]


def test_missing_column_and_unknown_hardware(tmp_path, capsys):
    src = write(tmp_path / "in.csv", "in_channels,out_channels\n8,8\n")
    assert main(["eval", src, "-o", str(tmp_path / "o.csv")]) == 2
    assert "missing column(s) kernel_size" in capsys.readouterr().err
    src = write(tmp_path / "in.csv", HEADER + "\n8,8,1,1,4,1,8,8\n")
    assert main(["eval", src, "-o", str(tmp_path / "o.csv"), "--hardware", "nope"]) == 2
    assert "unknown hardware 'nope'" in capsys.readouterr().err


def test_eval_with_triton_backend_equals_torch(tmp_path):
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    src = str(DATA / "bitfusion_examples.csv")
    assert main(["eval", src, "-o", str(a), "--backend", "torch"]) == 0
    assert main(["eval", src, "-o", str(b), "--backend", "triton"]) == 0
    assert read_rows(a) == read_rows(b)


ROW = "8,8,1,1,4,1,8,8"


@pytest.mark.parametrize(
    "body, message",
    [
        (f"{ROW}\n{ROW},\n", "bad.csv:3: 1 more field(s) than the header's 8 (a trailing comma?)"),
        ("8,8,1,1,4,1,1,8\n", "bad.csv:2: field 'w_bits'=1 is below the hardware's pmin_bits=2"),
        ("8,8,1,1,4,1,8,-4\n", "bad.csv:2: field 'a_bits'=-4 is below"),
        ("", "bad.csv: no layer rows"),
        # int64 overflow gave negative energy and DRAM bits with exit 0
        ("100000000000000,64,3,1,14,1,8,8\n", "bad.csv:2: in_channels=100000000000000 is larger"),
        ("99999999999999999999999,64,3,1,14,1,8,8\n", "bad.csv:2: in_channels=9999999"),
        ("1000000,1000000,3,1,14,1,8,8\n", "bad.csv:2: a layer of 1764000000000000 MACs"),
    ],
)
def test_more_bad_rows_named_before_costing(tmp_path, capsys, body, message):
    out = tmp_path / "out.csv"
    assert main(["eval", write(tmp_path / "bad.csv", HEADER + "\n" + body), "-o", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_the_largest_exact_layer_is_costed_exactly(tmp_path):
    """Just inside the limit the counters are positive and the energy is the sum of its parts."""
    from dnas.cost.layer import MAX_COUNT

    side = 1024  # batch 1024 x 1024 x 1024 channels x 128 x 128 outputs, 1 x 1 kernel: 2^44 MACs
    body = f"{side},{side},1,1,128,{side},8,8\n"
    out = tmp_path / "out.csv"
    assert main(["eval", write(tmp_path / "in.csv", HEADER + "\n" + body), "-o", str(out)]) == 0
    row = next(csv.DictReader(out.open()))
    assert int(row["cycles"]) > 0 and int(row["dram_read_bits"]) > 0
    parts = sum(float(row[k]) for k in ("core_energy_nJ", "sram_energy_nJ", "dram_energy_nJ"))
    assert float(row["total_energy_nJ"]) == pytest.approx(parts, rel=1e-12)
    assert side * side * 128 * 128 * side == MAX_COUNT


def test_empty_file_names_the_columns(tmp_path, capsys):
    assert main(["eval", write(tmp_path / "e.csv", ""), "-o", str(tmp_path / "o.csv")]) == 2
    assert "missing column(s) in_channels" in capsys.readouterr().err


def test_bom_and_crlf_are_read(tmp_path):
    src = tmp_path / "excel.csv"
    src.write_bytes(("\ufeff" + HEADER + "\r\n" + ROW + "\r\n").encode("utf-8"))
    plain = tmp_path / "plain.csv"
    plain.write_text(HEADER + "\n" + ROW + "\n")
    assert main(["eval", str(src), "-o", str(tmp_path / "a.csv")]) == 0
    assert main(["eval", str(plain), "-o", str(tmp_path / "b.csv")]) == 0
    assert read_rows(tmp_path / "a.csv") == read_rows(tmp_path / "b.csv")


def test_bad_outputs_refused_before_costing(tmp_path, capsys):
    src = write(tmp_path / "in.csv", HEADER + "\n" + ROW + "\n")
    assert main(["eval", src, "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["eval", src, "-o", str(tmp_path / "nope" / "o.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    before = (tmp_path / "in.csv").read_text()
    assert main(["eval", src, "-o", src]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "-o", str(tmp_path / "o.csv")]) == 2
    assert f"{tmp_path}: is a directory; give the layers CSV" in capsys.readouterr().err
    assert (tmp_path / "in.csv").read_text() == before


def test_output_through_a_symlink_keeps_the_link_and_a_normal_mode(tmp_path):
    import os
    import stat

    src = write(tmp_path / "in.csv", HEADER + "\n" + ROW + "\n")
    real = tmp_path / "real.csv"
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    assert main(["eval", src, "-o", str(link)]) == 0
    assert link.is_symlink() and len(read_rows(real)) == 1
    fresh = tmp_path / "fresh.csv"
    assert main(["eval", src, "-o", str(fresh)]) == 0
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~mask


def test_output_to_stdout(tmp_path, capsys):
    src = write(tmp_path / "in.csv", HEADER + "\n" + ROW + "\n")
    assert main(["eval", src, "-o", "-"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(HEADER) and len(out) == 2


def test_malformed_hardware_yaml_is_one_line(tmp_path, capsys):
    src = write(tmp_path / "in.csv", HEADER + "\n" + ROW + "\n")
    hw = write(tmp_path / "hw.yaml", "pmax_bits: [8\nrows: 16\n")
    assert main(["eval", src, "-o", str(tmp_path / "o.csv"), "--hardware", hw]) == 2
    err = capsys.readouterr().err
    assert "is not valid YAML (line" in err and "Traceback" not in err


def test_numbers_in_a_hardware_yaml_read_as_the_hydra_commands_read_them(tmp_path, capsys):
    """`freq_mhz: 5e2`, `e_dram_nj_per_bit: 15e-3`: dnas-lut hardware=FILE (OmegaConf) took them
    as numbers, dnas-cost --hardware FILE (PyYAML) as strings and refused the file."""
    from importlib import resources

    from omegaconf import OmegaConf

    from dnas.cost.hardware import BitFusionConfig, load_hardware

    default = resources.files("dnas").joinpath("conf/hardware/bitfusion.yaml").read_text()
    text = default.replace("freq_mhz: 500.0", "freq_mhz: 5e2").replace(
        "e_dram_nj_per_bit: 0.015", "e_dram_nj_per_bit: 15e-3"
    )
    assert "5e2" in text and "15e-3" in text
    hw = write(tmp_path / "hw.yaml", text)
    hydra_reads = BitFusionConfig.from_dict(OmegaConf.to_container(OmegaConf.load(hw)))
    assert load_hardware(hw) == hydra_reads == load_hardware("bitfusion")
    src = write(tmp_path / "in.csv", HEADER + "\n" + ROW + "\n")
    assert main(["eval", src, "-o", str(tmp_path / "a.csv"), "--hardware", hw]) == 0
    assert main(["eval", src, "-o", str(tmp_path / "b.csv")]) == 0
    assert read_rows(tmp_path / "a.csv") == read_rows(tmp_path / "b.csv")
    capsys.readouterr()
    twice = write(tmp_path / "twice.yaml", text + "freq_mhz: 1000.0\n")  # Hydra refuses it too
    assert main(["eval", src, "-o", str(tmp_path / "c.csv"), "--hardware", twice]) == 2
    err = capsys.readouterr().err
    assert "duplicate key freq_mhz" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "data, message",
    [
        ((HEADER + "\n" + ROW + "\n").encode("utf-16"), "not UTF-8 text (byte 0"),
        (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)), "not UTF-8 text"),
        ((HEADER + "\n" + ROW + "\x00\n").encode(), "holds NUL bytes"),
    ],
)
def test_a_file_that_is_not_utf8_text_is_one_line(tmp_path, capsys, data, message):
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    out = tmp_path / "out.csv"
    assert main(["eval", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_cache_that_is_a_file_is_refused(tmp_path, monkeypatch):
    from dnas.cost.hardware import BitFusionConfig
    from dnas.cost.table import TableError, default_table_path
    from dnas.space import load_space

    (tmp_path / "f").write_text("")
    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "f"))
    with pytest.raises(TableError, match=r"DNAS_CACHE=.*/f is a file; the table cache needs a"):
        default_table_path(load_space("fmnist_mbv2"), BitFusionConfig())


def test_a_file_dnas_cost_did_not_write_is_replaced_only_with_force(tmp_path, capsys):
    """-o over the user's own notes (or the layers they wrote) is refused and leaves the file as it
    was; an earlier result is replaced (re-running a command is normal); --force replaces any."""
    src = write(tmp_path / "in.csv", HEADER + "\n" + ROW + "\n")
    notes = write(tmp_path / "notes.csv", "my,own\n1,2\n")
    assert main(["eval", src, "-o", notes]) == 2
    err = capsys.readouterr().err
    assert "notes.csv: holds a file that is not this command's CSV" in err
    assert "'my,own'" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "notes.csv").read_text() == "my,own\n1,2\n"
    other_layers = write(tmp_path / "layers.csv", HEADER + "\n" + ROW + "\n")  # not costed yet
    assert main(["eval", src, "-o", other_layers]) == 2
    out = str(tmp_path / "out.csv")
    assert main(["eval", src, "-o", out]) == 0
    first = read_rows(tmp_path / "out.csv")
    assert main(["eval", src, "-o", out]) == 0  # its own earlier output: replaced
    assert read_rows(tmp_path / "out.csv") == first
    assert main(["eval", src, "-o", notes, "--force"]) == 0
    assert read_rows(tmp_path / "notes.csv") == first
