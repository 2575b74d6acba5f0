"""dnas-cost arch: per-layer costs of an architecture whose totals equal the cost table to the bit."""

from __future__ import annotations

import csv
import math
from importlib import resources

import pytest
import yaml

from dnas.cli.cost import cost_arch, main
from dnas.cost.hardware import BitFusionConfig, load_hardware
from dnas.space import SearchSpace, load_space

CONF = resources.files("dnas") / "conf"
BITFUSION_YAML = load_hardware("bitfusion").to_dict()


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def hardware_yaml(path, **changes):
    """A copy of conf/hardware/bitfusion.yaml with some constants changed."""
    path.write_text(yaml.safe_dump({**BITFUSION_YAML, **changes}, sort_keys=False))
    return str(path)


def saved(space, table, arch, path):
    """``arch`` saved with its exact table cost, as dnas-search writes it."""
    lat, en = table.arch_cost(space, arch)
    arch.with_metrics(latency_ms=lat, energy_mj=en, target_latency_ms=1.0, test_acc=0.5).save(path)
    return str(path)


def run(capsys, *argv):
    rc = main(["arch", *map(str, argv), "--backend", "torch"])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("which", ["seed0", "seed1", "seed2", "seed3", "largest", "smallest"])
def test_totals_and_layers_equal_the_table(tmp_path, capsys, space, table, which):
    arch = {
        "largest": space.largest_arch(),
        "smallest": space.smallest_arch(),
    }.get(which) or space.random_arch(int(which.removeprefix("seed")))
    path = saved(space, table, arch, tmp_path / "arch.yaml")
    out_csv = tmp_path / "layers.csv"
    rc, out, err = run(capsys, path, "--csv", out_csv)
    assert rc == 0, err
    assert "matches" in out and "latency_ms and energy_mj exactly" in out

    lat, en = table.arch_cost(space, arch)
    rows = read_rows(out_csv)
    indices = space.arch_indices(arch)
    assert len(rows) == len(indices) + 1  # one row per costed layer, then the total
    assert [r["layer"] for r in rows[:-1]] == [
        k.role if k.block < 0 else f"{k.role}.{k.block}" for k in indices
    ]
    total = rows[-1]
    assert total["layer"] == "total"
    assert float(total["latency_ms"]) == lat  # exact: repr() round-trips
    assert float(total["energy_mj"]) == en
    assert f"latency_ms={lat!r} energy_mj={en!r}" in out
    for row, (key, idx) in zip(rows, indices.items()):
        assert float(row["latency_ms"]) == float(table.entries[key].latency_ms[idx]), row["layer"]
        assert float(row["energy_mj"]) == float(table.entries[key].energy_mj[idx]), row["layer"]
        cycles, compute, stall = (
            int(row[c]) for c in ("cycles", "compute_cycles", "mem_stall_cycles")
        )
        assert cycles == compute + stall
        assert float(row["mem_stall_share"]) == stall / cycles
        assert row["memory_bound"] == str(int(stall > compute))
    assert int(total["cycles"]) == sum(int(r["cycles"]) for r in rows[:-1])
    skipped = [i for i, b in enumerate(arch.blocks) if b.skipped]
    assert not any(r["block"] in map(str, skipped) for r in rows[:-1])


def test_depthwise_and_fixed_layers_in_csv(tmp_path, capsys, space, table):
    arch = space.largest_arch()
    out_csv = tmp_path / "layers.csv"
    rc, out, _ = run(capsys, saved(space, table, arch, tmp_path / "a.yaml"), "--csv", out_csv)
    assert rc == 0
    rows = {r["layer"]: r for r in read_rows(out_csv)}
    assert rows["stem"]["im2col"] == "1" and rows["stem"]["block"] == "-1"
    dw = rows["dw.0"]
    assert dw["depthwise"] == "1" and dw["groups"] == dw["in_channels"] == dw["out_channels"]
    assert int(dw["kernel_size"]) == space.blocks[0].kernels[-1]
    assert rows["classifier"]["out_channels"] == str(space.num_classes)
    for name in ("expand.3", "dw.3", "stem", "classifier", "total"):
        assert name in out  # the printed table


def test_a_recorded_cost_off_by_one_ulp_is_an_error(tmp_path, capsys, space, table):
    arch = space.random_arch(7)
    lat, en = table.arch_cost(space, arch)
    path = tmp_path / "arch.yaml"
    arch.with_metrics(latency_ms=math.nextafter(lat, 1.0), energy_mj=en).save(path)
    rc, _, err = run(capsys, path)
    assert rc == 1
    assert "do not match" in err and f"latency_ms {lat!r} != " in err
    assert "energy_mj" not in err  # only what differs is named
    assert err.strip().count("\n") == 0


def test_an_arch_without_costs_is_costed_without_comparison(tmp_path, capsys, space, table):
    path = tmp_path / "arch.yaml"
    space.random_arch(3).save(path)
    rc, out, _ = run(capsys, path)
    assert rc == 0 and "nothing to compare" in out


@pytest.mark.parametrize(
    "changes",
    [{"freq_mhz": 1000.0}, {"wbuf_bytes": 4096, "ibuf_bytes": 2048}, {"e_dram_nj_per_bit": 0.03}],
)
def test_other_hardware_gives_other_totals(tmp_path, capsys, space, table, changes):
    arch = space.random_arch(11)
    path = saved(space, table, arch, tmp_path / "arch.yaml")
    hw_file = hardware_yaml(tmp_path / "hw.yaml", **changes)
    out_csv = tmp_path / "layers.csv"
    rc, out, err = run(capsys, path, "--hardware", hw_file, "--csv", out_csv)
    assert rc == 0, err
    assert "are for bitfusion" in out and "not compared" in out
    assert all(k in out for k in changes)  # names the constants that differ
    total = read_rows(out_csv)[-1]
    got = float(total["latency_ms"]), float(total["energy_mj"])
    assert got != table.arch_cost(space, arch)
    want = cost_arch(space, arch, BitFusionConfig.from_dict({**BITFUSION_YAML, **changes}), "torch")
    assert got == (want[1]["latency_ms"], want[1]["energy_mj"])
    if "freq_mhz" in changes:  # twice the clock, same cycles: half the latency, same energy
        assert got[0] == pytest.approx(table.arch_cost(space, arch)[0] / 2, rel=1e-12)
        assert got[1] == table.arch_cost(space, arch)[1]


def test_same_hardware_given_by_path_is_compared(tmp_path, capsys, space, table):
    path = saved(space, table, space.random_arch(5), tmp_path / "arch.yaml")
    rc, out, _ = run(capsys, path, "--hardware", hardware_yaml(tmp_path / "copy.yaml"))
    assert rc == 0 and "exactly" in out


def test_run_config_hardware_is_the_reference(tmp_path, capsys, space):
    """A search run with hardware overrides records its hardware in .hydra/config.yaml: the YAML's
    costs are compared on that hardware, not on the default."""
    fast = {**BITFUSION_YAML, "freq_mhz": 1000.0}
    arch = space.random_arch(2)
    _, total = cost_arch(space, arch, BitFusionConfig.from_dict(fast), "torch")
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"hardware": fast, "seed": 0}))
    path = run_dir / "arch.yaml"
    arch.with_metrics(latency_ms=total["latency_ms"], energy_mj=total["energy_mj"]).save(path)
    rc, out, _ = run(capsys, path)
    assert rc == 0 and "not compared" in out and "freq_mhz" in out
    rc, out, _ = run(capsys, path, "--hardware", hardware_yaml(tmp_path / "fast.yaml", **fast))
    assert rc == 0 and "exactly" in out


def test_space_by_path(tmp_path, capsys, space, table):
    path = saved(space, table, space.random_arch(4), tmp_path / "arch.yaml")
    space_file = CONF / "space" / "fmnist_mbv2.yaml"
    rc, out, _ = run(capsys, path, "--space", space_file)
    assert rc == 0 and "exactly" in out


def test_run_directory_and_its_space_yaml(tmp_path, capsys):
    """A run writes space.yaml beside arch.yaml (the space with the run's overrides): it is the
    default space, and the run directory may stand for its arch.yaml."""
    data = yaml.safe_load((CONF / "space" / "fmnist_mbv2.yaml").read_text())
    custom = SearchSpace.from_dict({**data, "expand_ratios": [2, 4]})  # other widths, same name
    arch = custom.smallest_arch()
    assert custom.name == arch.space == "fmnist_mbv2"
    _, total = cost_arch(custom, arch, BitFusionConfig(), "torch")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "space.yaml").write_text(yaml.safe_dump(custom.to_dict(), sort_keys=False))
    metrics = {"latency_ms": total["latency_ms"], "energy_mj": total["energy_mj"]}
    arch.with_metrics(**metrics).save(run_dir / "arch.yaml")
    rc, out, err = run(capsys, run_dir)
    assert rc == 0 and "exactly" in out, err
    one_line_error(capsys, [run_dir, "--space", "fmnist_mbv2"], "does not fit space")
    (run_dir / "space.yaml").write_text("name: broken\n")
    one_line_error(capsys, [run_dir], "space.yaml: not a valid search space")


def one_line_error(capsys, argv, *fragments):
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    assert err.startswith("dnas-cost: error: ") and err.strip().count("\n") == 0, err
    for f in fragments:
        assert f in err, err
    assert "Traceback" not in err


def test_foreign_arch_is_refused(tmp_path, capsys):
    cifar = load_space("cifar_mbv2")
    path = tmp_path / "cifar.yaml"
    cifar.random_arch(0).save(path)
    out_csv = tmp_path / "layers.csv"
    one_line_error(
        capsys,
        [path, "--space", "fmnist_mbv2", "--csv", out_csv],
        "does not fit space 'fmnist_mbv2'",
        "--space cifar_mbv2",
    )
    assert not out_csv.exists()
    rc, out, _ = run(capsys, path)  # its own space (the default) fits
    assert rc == 0 and "nothing to compare" in out


def test_impossible_width_is_refused(tmp_path, capsys, space, table):
    path = tmp_path / "arch.yaml"
    saved(space, table, space.largest_arch(), path)
    data = yaml.safe_load(path.read_text())
    data["blocks"][1]["width"] += 1
    path.write_text(yaml.safe_dump(data))
    one_line_error(capsys, [path], "blocks[1].width", "is not a choice", "--space")


def test_input_errors_are_one_line(tmp_path, capsys, space):
    arch_file = tmp_path / "arch.yaml"
    space.random_arch(1).save(arch_file)
    one_line_error(capsys, [tmp_path / "missing.yaml"], "missing.yaml: no such file")
    (tmp_path / "empty").mkdir()
    one_line_error(capsys, [tmp_path / "empty"], "is a directory without an arch.yaml")
    one_line_error(capsys, [CONF / "space" / "fmnist_mbv2.yaml"], "is not an architecture")
    (tmp_path / "bad.yaml").write_text("stem: [1\n")
    one_line_error(capsys, [tmp_path / "bad.yaml"], "not valid YAML")
    one_line_error(capsys, [arch_file, "--hardware", "nope"], "unknown hardware 'nope'")
    one_line_error(
        capsys, [arch_file, "--hardware", tmp_path / "nope.yaml"], "hardware config file not found"
    )
    one_line_error(capsys, [arch_file, "--space", "nope"], "unknown search space 'nope'")
    one_line_error(
        capsys,
        [arch_file, "--hardware", hardware_yaml(tmp_path / "p4.yaml", pmax_bits=4, pmin_bits=2)],
        "layer stem on hardware",
        "pmax_bits=4",
    )
    one_line_error(
        capsys,
        [arch_file, "--hardware", hardware_yaml(tmp_path / "tiny.yaml", wbuf_bytes=16)],
        "fit no tiling",
    )
    data = yaml.safe_load(arch_file.read_text())
    data["space"] = "mine"
    arch_file.write_text(yaml.safe_dump(data))
    one_line_error(capsys, [arch_file], "'mine', which is not built in", "--space PATH")


def test_a_csv_output_that_cannot_be_written_is_refused_before_costing(tmp_path, capsys, space):
    """``--csv DIR`` and ``--csv /missing/x.csv`` as ``eval -o`` refuses them (no directory is
    created), and never the architecture file itself."""
    arch_file = tmp_path / "arch.yaml"
    space.random_arch(1).save(arch_file)
    (tmp_path / "d").mkdir()
    one_line_error(capsys, [arch_file, "--csv", tmp_path / "d"], "--csv", "is a directory")
    one_line_error(capsys, [arch_file, "--csv", tmp_path / "missing" / "x.csv"], "does not exist")
    assert not (tmp_path / "missing").exists()
    before = arch_file.read_text()
    one_line_error(capsys, [arch_file, "--csv", arch_file], "is the architecture file")
    assert arch_file.read_text() == before


def test_an_arch_priced_by_a_measured_table_names_it(tmp_path, capsys, space, table, monkeypatch):
    """A run searched with an imported (measured) table: its totals are not the model's, and
    dnas-cost arch says which table priced it instead of "the totals do not match"."""
    from dnas.cost.table import default_table_path, import_csv

    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    model_csv, measured_csv = tmp_path / "model.csv", tmp_path / "measured.csv"
    table.to_csv(model_csv)
    rows = read_rows(model_csv)
    for r in rows:
        r["latency_ms"] = repr(2 * float(r["latency_ms"]))
    with open(measured_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    measured = import_csv(measured_csv, space, "pixel8")
    saved_at = default_table_path(space, BitFusionConfig()).parent / "pixel8.pt"
    measured.save(saved_at)
    arch = space.random_arch(3)
    lat, en = measured.arch_cost(space, arch)
    path = tmp_path / "arch.yaml"
    arch.with_metrics(latency_ms=lat, energy_mj=en).priced_by(measured.header.content_hash).save(
        path
    )
    rc, out, err = run(capsys, path)
    assert rc == 0, err
    assert "measured table of 'pixel8'" in out and str(saved_at) in out and "not compared" in out


def test_a_csv_output_over_a_foreign_file_needs_force(tmp_path, capsys, space):
    arch_file = tmp_path / "arch.yaml"
    space.random_arch(1).save(arch_file)
    notes = tmp_path / "notes.csv"
    notes.write_text("keep me\n")
    one_line_error(capsys, [arch_file, "--csv", notes], "--csv", "holds a file that is not")
    assert notes.read_text() == "keep me\n"
    assert main(["arch", str(arch_file), "--csv", str(notes), "--force"]) == 0
    rows = read_rows(notes)
    assert rows[-1]["layer"] == "total"
    assert main(["arch", str(arch_file), "--csv", str(notes)]) == 0  # now its own: replaced
    assert read_rows(notes) == rows


def test_empty_output_names_are_refused(tmp_path, capsys, space):
    """--csv "" exited 0 and wrote nothing; -o "" wrote into RUN_DIR/export or ./ unasked."""
    from dnas.cli.export import main as export_main
    from dnas.cli.pareto import main as pareto_main

    arch_file = tmp_path / "arch.yaml"
    space.random_arch(1).save(arch_file)
    one_line_error(capsys, [arch_file, "--csv", ""], "--csv is empty; give a file name")
    assert export_main([str(tmp_path), "-o", ""]) == 2
    assert "dnas-export: error: -o is empty" in capsys.readouterr().err
    assert pareto_main([str(tmp_path), "-o", " "]) == 2
    assert "dnas-pareto: error: -o is empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch.yaml"]
    assert export_main([str(arch_file)]) == 2  # a file where the run directory goes
    assert f"{arch_file} is a file; give the dnas-train run directory" in capsys.readouterr().err
