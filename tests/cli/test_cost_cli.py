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
