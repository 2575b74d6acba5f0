"""dnas-pareto: rows, methods, budgets and Pareto-front flags from hand-made run directories."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dnas.cli.pareto import COLUMNS, main, non_dominated
from dnas.space import Architecture
from tests.runs import SEARCH_BASE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# (sub-directory, run.json or None, model.pt?, metrics): a multirun of every kind of run.
NAN = float("nan")
RUNS = [
    ("0", {"method": "dnas"}, False, dict(lat=0.2, en=0.30, acc=0.80, t_lat=0.25)),
    ("1", {"method": "dnas"}, False, dict(lat=0.4, en=0.20, acc=0.85, t_lat=0.5)),
    ("2", {"method": "dnas"}, False, dict(lat=0.6, en=0.50, acc=0.84, t_lat=0.7)),
    ("3", {"method": "dnas"}, False, dict(lat=0.3, en=0.10, acc=0.78, t_en=0.12)),
    ("4", None, False, dict(lat=0.5, en=0.25, acc=0.86, t_lat=0.55, t_en=0.3)),  # old search
    ("5", None, True, dict(lat=0.4, en=0.20, acc=0.90, sup=0.85, t_lat=0.5)),  # old dnas-train
    (
        "6",
        {"method": "train", "source_method": "evolution_predictor"},
        True,
        dict(lat=0.35, en=0.22, acc=0.88),
    ),
    ("7", {"method": "evolution_predictor"}, False, dict(lat=0.3, en=0.15, acc=0.82, t_lat=0.3)),
    ("8", {"method": "evolution_predictor"}, False, dict(lat=0.3, en=0.15, acc=0.82, t_lat=0.3)),
    ("9", {"method": "evolution_predictor"}, False, dict(lat=0.25, en=0.3)),  # no accuracy
    ("10", {"method": "random"}, False, dict(lat=0.1, en=0.05, acc=NAN)),
    ("11", {"method": "random"}, False, dict(lat=0.2, en=0.10, acc=0.5)),
]
# method, target_metric, target_value, supernet_acc, finetuned_acc, front latency, front energy
EXPECTED = {
    "0": ("dnas", "latency_ms", "0.25", "0.8", "", True, False),
    "1": ("dnas", "latency_ms", "0.5", "0.85", "", True, True),
    "2": ("dnas", "latency_ms", "0.7", "0.84", "", False, False),
    "3": ("dnas", "energy_mj", "0.12", "0.78", "", False, True),
    "4": ("dnas", "latency_ms", "0.55", "0.86", "", True, True),
    "5": ("dnas", "latency_ms", "0.5", "0.85", "0.9", True, True),
    "6": ("evolution_predictor", "", "", "", "0.88", True, True),
    "7": ("evolution_predictor", "latency_ms", "0.3", "0.82", "", True, True),
    "8": ("evolution_predictor", "latency_ms", "0.3", "0.82", "", True, True),
    "9": ("evolution_predictor", "", "", "", "", False, False),
    "10": ("random", "", "", "", "", False, False),
    "11": ("random", "", "", "0.5", "", True, True),
}


def make_run(run_dir, space, seed, run_json, model, lat, en, acc=None, sup=None, **targets):
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = {"latency_ms": lat, "energy_mj": en, "val_acc": 0.1}
    if acc is not None:
        metrics["test_acc"] = acc
    if sup is not None:
        metrics["supernet_acc"] = sup
    if "t_lat" in targets:
        metrics["target_latency_ms"] = targets["t_lat"]
    if "t_en" in targets:
        metrics["target_energy_mj"] = targets["t_en"]
    space.random_arch(seed).with_metrics(**metrics).save(run_dir / "arch.yaml")
    if run_json is not None:
        (run_dir / "run.json").write_text(json.dumps({**run_json, "dnas_version": "0.1.0"}))
    if model:
        (run_dir / "model.pt").write_bytes(b"weights")
    return run_dir


@pytest.fixture
def multirun(tmp_path, space):
    root = tmp_path / "multirun"
    for seed, (sub, run_json, model, m) in enumerate(RUNS):
        make_run(root / sub, space, seed, run_json, model, **m)
    # Hydra's folder holds configs, never results: an arch.yaml there is not a run.
    make_run(root / "0" / ".hydra", space, 99, None, False, lat=9.0, en=9.0, acc=1.0)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def read_rows(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


def test_rows_methods_targets_and_fronts(multirun, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(multirun), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    rows = read_rows(out / "pareto.csv")
    assert [r["run_dir"] for r in rows] == [str(multirun / s) for s, *_ in RUNS]  # natural order
    for r, (sub, _, _, m) in zip(rows, RUNS):
        method, tm, tv, sup, fin, f_lat, f_en = EXPECTED[sub]
        got = (r["method"], r["target_metric"], r["target_value"], r["supernet_acc"])
        assert got == (method, tm, tv, sup), sub
        assert r["finetuned_acc"] == fin, sub
        assert (r["on_front_latency"], r["on_front_energy"]) == (str(f_lat), str(f_en)), sub
        assert float(r["latency_ms"]) == m["lat"] and float(r["energy_mj"]) == m["en"]
    assert "12 architectures" in captured.out  # the summary table
    assert "dnas-pareto: warning" not in captured.err


def test_fronts_match_a_brute_force_count(multirun, tmp_path):
    """Every flagged point is undominated in its series, every unflagged one is dominated."""
    assert main([str(multirun), "-o", str(tmp_path)]) == 0
    rows = read_rows(tmp_path / "pareto.csv")
    for cost, flag in (("latency_ms", "on_front_latency"), ("energy_mj", "on_front_energy")):
        for r in rows:
            acc = float(r["finetuned_acc"] or r["supernet_acc"] or "nan")
            peers = [
                q
                for q in rows
                if q["method"] == r["method"]
                and bool(q["finetuned_acc"]) == bool(r["finetuned_acc"])
                and (q["finetuned_acc"] or q["supernet_acc"])
                and q is not r
            ]
            dominated = any(
                float(q[cost]) <= float(r[cost])
                and float(q["finetuned_acc"] or q["supernet_acc"]) >= acc
                and (
                    float(q[cost]) < float(r[cost])
                    or float(q["finetuned_acc"] or q["supernet_acc"]) > acc
                )
                for q in peers
            )
            assert r[flag] == str(not math.isnan(acc) and not dominated), (r["run_dir"], cost)


def test_non_dominated():
    pts = [(1.0, 0.5), (2.0, 0.7), (2.0, 0.6), (3.0, 0.7), (0.5, 0.4), (1.0, 0.5)]
    assert non_dominated(pts) == [True, True, False, False, True, True]


def test_plot_is_a_png(multirun, tmp_path):
    assert main([str(multirun), "-o", str(tmp_path / "o")]) == 0
    png = tmp_path / "o" / "pareto.png"
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 20_000
    import matplotlib.image

    h, w, _ = matplotlib.image.imread(png).shape
    assert w > 2 * h > 600  # two panels side by side
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["pareto.csv", "pareto.png"]


def test_default_outdir_is_cwd_and_dirs_combine(multirun, tmp_path, space, monkeypatch):
    single = make_run(tmp_path / "outputs" / "search" / "run", space, 1, None, False, lat=1, en=2)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    # A directory given twice (directly and inside its multirun) counts once.
    assert main([str(multirun), str(multirun / "3"), str(tmp_path / "outputs")]) == 0
    rows = read_rows(here / "pareto.csv")
    assert len(rows) == len(RUNS) + 1
    assert rows[-1]["run_dir"] == str(single)
    assert rows[-1]["method"] == "dnas" and rows[-1]["supernet_acc"] == ""
    assert rows[-1]["target_metric"] == "" and rows[-1]["on_front_latency"] == "False"
    assert (here / "pareto.png").is_file()


def test_finetuned_run_reports_the_search_method_through_a_chain(tmp_path, space):
    search = make_run(
        tmp_path / "r" / "search", space, 0, {"method": "random"}, False, 0.3, 0.2, 0.6
    )
    first = {"method": "train", "source_method": "random", "source": str(search)}
    ft1 = make_run(tmp_path / "r" / "ft1", space, 0, first, True, 0.3, 0.2, 0.7, sup=0.6)
    second = {"method": "train", "source_method": "train", "source": str(ft1)}
    make_run(tmp_path / "r" / "ft2", space, 0, second, True, 0.3, 0.2, 0.75, sup=0.6)
    lost = {"method": "train", "source_method": "train", "source": str(tmp_path / "gone")}
    make_run(tmp_path / "r" / "ft3", space, 0, lost, True, 0.3, 0.2, 0.72)
    assert main([str(tmp_path / "r"), "-o", str(tmp_path)]) == 0
    rows = {r["run_dir"].split(os.sep)[-1]: r for r in read_rows(tmp_path / "pareto.csv")}
    assert rows["search"]["method"] == "random" and rows["search"]["finetuned_acc"] == ""
    assert rows["ft1"]["method"] == rows["ft2"]["method"] == "random"
    assert rows["ft2"]["finetuned_acc"] == "0.75" and rows["ft2"]["supernet_acc"] == "0.6"
    assert rows["ft3"]["method"] == "dnas"  # the source is gone: dnas, as dnas-train assumes
    # Finetuned and in-supernet accuracies are separate series: both fronts hold a point.
    assert rows["search"]["on_front_latency"] == "True"
    assert rows["ft2"]["on_front_latency"] == "True" and rows["ft1"]["on_front_latency"] == "False"


def test_a_run_trained_from_scratch_is_its_own_series(tmp_path, space, capsys):
    """``dnas-train init=scratch`` trains the architecture from random weights: its accuracy is a
    ``scratch_acc``, never a ``finetuned_acc``, and it is ranked only against other such rows."""
    search = make_run(tmp_path / "r" / "search", space, 0, {"method": "dnas"}, False, 0.3, 0.2, 0.8)
    src = {"method": "train", "source_method": "dnas", "source": str(search)}
    make_run(
        tmp_path / "r" / "ft", space, 0, {**src, "init": "x.pt"}, True, 0.3, 0.2, 0.86, sup=0.8
    )
    scratch = {**src, "init": "scratch"}
    make_run(tmp_path / "r" / "sc", space, 0, scratch, True, 0.3, 0.2, 0.83, sup=0.8)
    # as costly as sc and less accurate: dominated by sc, in the scratch series
    make_run(tmp_path / "r" / "sc2", space, 1, scratch, True, 0.3, 0.2, 0.81, sup=0.8)
    assert main([str(tmp_path / "r"), "-o", str(tmp_path)]) == 0
    rows = {r["run_dir"].split(os.sep)[-1]: r for r in read_rows(tmp_path / "pareto.csv")}
    assert rows["sc"]["method"] == "dnas"
    assert rows["sc"]["scratch_acc"] == "0.83" and rows["sc"]["finetuned_acc"] == ""
    assert rows["sc"]["supernet_acc"] == "0.8"  # the search's accuracy is carried over
    assert rows["ft"]["finetuned_acc"] == "0.86" and rows["ft"]["scratch_acc"] == ""
    assert rows["search"]["scratch_acc"] == ""
    # One front per series: ft (finetuned, more accurate at the same cost) does not push sc off
    # its front, and sc pushes sc2 off.
    front = {name: rows[name]["on_front_latency"] for name in rows}
    assert front == {"search": "True", "ft": "True", "sc": "True", "sc2": "False"}
    assert "scratch %" in capsys.readouterr().out  # the summary table's column


def test_unreadable_runs_are_skipped_with_a_warning(multirun, tmp_path, space, capsys):
    (multirun / "12").mkdir()
    (multirun / "12" / "arch.yaml").write_text("stem: [8\n")
    make_run(multirun / "13", space, 13, None, False, lat=0.1, en=0.1, acc=0.9)
    (multirun / "13" / "run.json").write_text("{not json")
    (multirun / "14").mkdir()
    (multirun / "14" / "arch.yaml").write_text("blocks: []\nstem: {w_bits: 8}\n")
    make_run(multirun / "15", space, 15, {"method": ""}, False, lat=0.1, en=0.1, acc=0.9)
    assert main([str(multirun), "-o", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("dnas-pareto: warning: ")]
    assert len(warnings) == 4
    for sub, file in (("12", "arch.yaml"), ("13", "run.json"), ("14", "arch.yaml")):
        assert any(str(multirun / sub / file) in w for w in warnings), sub
    assert any(str(multirun / "15" / "run.json") in w and "method" in w for w in warnings)
    assert len(read_rows(tmp_path / "pareto.csv")) == len(RUNS)


def test_a_yaml_without_cost_is_skipped(tmp_path, space, capsys):
    run = tmp_path / "m" / "0"
    run.mkdir(parents=True)
    space.random_arch(0).with_metrics(test_acc=0.5).save(run / "arch.yaml")
    make_run(tmp_path / "m" / "1", space, 1, None, False, lat=0.1, en=0.1, acc=0.9)
    assert main([str(tmp_path / "m"), "-o", str(tmp_path)]) == 0
    assert "no latency_ms or energy_mj" in capsys.readouterr().err
    assert len(read_rows(tmp_path / "pareto.csv")) == 1


@pytest.mark.parametrize("lat", [float("nan"), -5.0, 0.0, float("inf")])
def test_a_yaml_with_an_impossible_cost_is_skipped(tmp_path, space, capsys, lat):
    make_run(tmp_path / "m" / "0", space, 0, None, False, lat=lat, en=0.1, acc=0.95)
    make_run(tmp_path / "m" / "1", space, 1, None, False, lat=0.1, en=0.1, acc=0.9)
    assert main([str(tmp_path / "m"), "-o", str(tmp_path)]) == 0
    assert "latency_ms=" in capsys.readouterr().err
    rows = read_rows(tmp_path / "pareto.csv")
    assert len(rows) == 1 and float(rows[0]["latency_ms"]) == 0.1


def test_an_output_under_a_file_is_one_clear_line(tmp_path, space, capsys):
    make_run(tmp_path / "m" / "1", space, 1, None, False, lat=0.1, en=0.1, acc=0.9)
    (tmp_path / "notes.txt").write_text("mine")
    assert main([str(tmp_path / "m"), "-o", str(tmp_path / "notes.txt" / "sub")]) == 2
    err = capsys.readouterr().err
    assert "notes.txt is a file, not a directory" in err and "Errno" not in err


@pytest.mark.parametrize("case", ["missing", "empty", "file", "only_unreadable"])
def test_errors(tmp_path, capsys, case):
    target = tmp_path / "d"
    if case == "empty":
        (target / ".hydra").mkdir(parents=True)
        (target / ".hydra" / "arch.yaml").write_text("{}")  # hidden: not looked at
    elif case == "file":
        target.write_text("x")
    elif case == "only_unreadable":
        target.mkdir()
        (target / "arch.yaml").write_text("- 1\n")
    out = tmp_path / "out"
    assert main([str(target), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    error = [line for line in err.splitlines() if line.startswith("dnas-pareto: error: ")]
    assert len(error) == 1 and "Traceback" not in err
    assert {
        "missing": "no such directory",
        "empty": "no arch.yaml under",
        "file": "is not a directory",
        "only_unreadable": "could be read",
    }[case] in error[0]
    assert not out.exists()


SMALL = SEARCH_BASE


@pytest.mark.slow
def test_real_sweep_to_pareto(tmp_path, capsys):
    """`dnas-search experiment=pareto_sweep` (one run for the budgets; two here) on synthetic
    data, then dnas-pareto on its run directory."""
    run = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dnas.cli.search",
            "experiment=pareto_sweep",
            *SMALL,
            "front=[{latency_frac:0.05},{latency_frac:0.5}]",
            f"hydra.run.dir={run}",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "DNAS_CACHE": str(tmp_path / "cache")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main([str(run), "-o", str(tmp_path / "out")]) == 0
    rows = read_rows(tmp_path / "out" / "pareto.csv")
    members = sorted((run / "front").iterdir())
    assert [r["run_dir"] for r in rows] == [str(m) for m in members] and len(rows) == 2
    assert all(r["method"] == "dnas" and r["target_metric"] == "latency_ms" for r in rows)
    targets = [float(r["target_value"]) for r in rows]
    assert targets[0] < targets[1]
    for r in rows:
        assert float(r["latency_ms"]) <= float(r["target_value"])
        searched = Architecture.load(Path(r["run_dir"]) / "arch.yaml")
        assert float(r["supernet_acc"]) == pytest.approx(searched.metrics["test_acc"])
        assert r["finetuned_acc"] == ""
    assert any(r["on_front_latency"] == "True" for r in rows)
    assert (tmp_path / "out" / "pareto.png").read_bytes()[:8] == PNG_MAGIC


def test_pareto_sweep_configs():
    """pareto_sweep: one run over three budgets; pareto_sweep_independent: a multirun of them."""
    from tests.runs import compose_config

    front = compose_config("search", "experiment=pareto_sweep")
    assert [dict(t) for t in front.front] == [{"latency_frac": f} for f in (0.15, 0.3, 0.5)]
    assert str(front.hydra.mode) != "RunMode.MULTIRUN"
    independent = compose_config("search", "experiment=pareto_sweep_independent")
    assert independent.front is None and str(independent.hydra.mode) == "RunMode.MULTIRUN"
    assert independent.hydra.sweeper.params["target.latency_frac"] == "0.15,0.3,0.5"


def test_files_dnas_pareto_did_not_write_are_replaced_only_with_force(tmp_path, space, capsys):
    make_run(tmp_path / "m" / "1", space, 1, None, False, lat=0.1, en=0.1, acc=0.9)
    out = tmp_path / "out"
    out.mkdir()
    (out / "pareto.csv").write_text("my own table\n")
    assert main([str(tmp_path / "m"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pareto.csv holds a file that is not this command's CSV" in err and "--force" in err
    assert (out / "pareto.csv").read_text() == "my own table\n"
    assert not (out / "pareto.png").exists()  # refused before anything was written
    (out / "pareto.csv").unlink()
    (out / "pareto.png").write_text("not an image")
    assert main([str(tmp_path / "m"), "-o", str(out)]) == 2
    assert "pareto.png holds a file that is not a PNG image" in capsys.readouterr().err
    assert (out / "pareto.png").read_text() == "not an image"
    assert main([str(tmp_path / "m"), "-o", str(out), "--force"]) == 0
    assert (out / "pareto.png").read_bytes().startswith(b"\x89PNG")
    first = (out / "pareto.csv").read_text()
    assert main([str(tmp_path / "m"), "-o", str(out)]) == 0  # its own outputs: replaced
    assert (out / "pareto.csv").read_text() == first


def test_an_output_name_that_is_a_directory_is_refused_before_writing(tmp_path, space, capsys):
    make_run(tmp_path / "m" / "1", space, 1, None, False, lat=0.1, en=0.1, acc=0.9)
    (tmp_path / "o" / "pareto.png").mkdir(parents=True)
    assert main([str(tmp_path / "m"), "-o", str(tmp_path / "o")]) == 2
    assert "pareto.png is a directory; it writes a file there" in capsys.readouterr().err
    assert not (tmp_path / "o" / "pareto.csv").exists()  # nothing half-written


def _priced_run(run_dir, space, seed, hardware=None, table="a" * 64, fingerprint=None):
    """A search run whose arch.yaml names the table that priced it and whose run.json records
    the hardware config (as dnas-search writes them)."""
    from dnas.cost.hardware import load_hardware

    hw = {**load_hardware("bitfusion").to_dict(), **(hardware or {})}
    make_run(run_dir, space, seed, {"method": "dnas"}, False, lat=0.1 + seed, en=0.1, acc=0.9)
    arch = Architecture.load(run_dir / "arch.yaml").priced_by(table)
    if fingerprint is not None:
        from dataclasses import replace

        arch = replace(arch, space_fingerprint=fingerprint)
    arch.save(run_dir / "arch.yaml")
    record = {"method": "dnas", "table_hash": table, "config": {"hardware": hw}}
    (run_dir / "run.json").write_text(json.dumps(record))
    return run_dir


@pytest.mark.parametrize(
    ("other", "said"),
    [
        (dict(hardware={"freq_mhz": 1000.0}, table="b" * 64), "freq_mhz 500.0 against 1000.0"),
        (dict(table="b" * 64), "different cost tables (aaaaaaaaaaaa against bbbbbbbbbbbb"),
        (dict(fingerprint="0123456789abcdef"), "different spaces (fmnist_mbv2 "),
    ],
    ids=["hardware", "table", "space"],
)
def test_runs_priced_on_different_hardware_or_tables_are_refused(
    tmp_path, space, capsys, other, said
):
    _priced_run(tmp_path / "m" / "0", space, 0)
    _priced_run(tmp_path / "m" / "1", space, 1)  # same pricing: fine together
    _priced_run(tmp_path / "m" / "2", space, 2, **other)
    out = tmp_path / "out"
    assert main([str(tmp_path / "m" / "0"), str(tmp_path / "m" / "1"), "-o", str(out)]) == 0
    assert main([str(tmp_path / "m"), "-o", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    error = [line for line in err.splitlines() if line.startswith("dnas-pareto: error: ")]
    assert len(error) == 1 and said in error[0], err
    assert str(tmp_path / "m" / "0") in error[0] and str(tmp_path / "m" / "2") in error[0]
    assert "separate dnas-pareto calls" in error[0]
    assert not (tmp_path / "out2").exists()


def test_dnas_fit_runs_name_their_hardware_config(tmp_path, space, capsys):
    """dnas-fit records `model.hardware` (a name): it is compared as that config's settings."""
    run = _priced_run(tmp_path / "m" / "0", space, 0, hardware={"freq_mhz": 250.0})
    fit = _priced_run(tmp_path / "m" / "1", space, 1)
    record = json.loads((fit / "run.json").read_text())
    record["config"] = {"model": {"hardware": "bitfusion"}}
    (fit / "run.json").write_text(json.dumps(record))
    assert main([str(run.parent), "-o", str(tmp_path / "out")]) == 2
    assert "freq_mhz 250.0 against 500.0" in capsys.readouterr().err


def test_runs_behind_symbolic_links_are_followed(tmp_path, space, capsys):
    make_run(tmp_path / "runs" / "a", space, 0, {"method": "dnas"}, False, lat=0.2, en=0.1, acc=0.8)
    make_run(tmp_path / "runs" / "b", space, 1, {"method": "dnas"}, False, lat=0.3, en=0.1, acc=0.9)
    picked = tmp_path / "picked"
    picked.mkdir()
    (picked / "a").symlink_to(tmp_path / "runs" / "a")
    (picked / "b").symlink_to(tmp_path / "runs" / "b")
    (picked / "loop").symlink_to(picked)  # a link back up the tree ends there
    assert main([str(picked), "-o", str(tmp_path / "out")]) == 0
    rows = read_rows(tmp_path / "out" / "pareto.csv")
    assert sorted(r["run_dir"] for r in rows) == [str(picked / "a"), str(picked / "b")]


def test_an_interrupt_while_plotting_leaves_the_old_csv_and_png_as_a_pair(
    tmp_path, space, monkeypatch
):
    """Ctrl-C while the plot was saved left a new pareto.csv beside the old (or no) pareto.png."""
    from matplotlib.figure import Figure

    make_run(tmp_path / "m" / "1", space, 1, None, False, lat=0.1, en=0.1, acc=0.9)
    out = tmp_path / "out"
    assert main([str(tmp_path / "m"), "-o", str(out)]) == 0
    old = {name: (out / name).read_bytes() for name in ("pareto.csv", "pareto.png")}
    make_run(tmp_path / "m" / "2", space, 2, None, False, lat=0.2, en=0.1, acc=0.95)

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main([str(tmp_path / "m"), "-o", str(out)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old  # no temporaries either
