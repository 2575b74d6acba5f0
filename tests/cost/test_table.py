"""Cost tables: exact against the cost model, checked headers, atomic files, measured imports."""

from __future__ import annotations

import random

import pytest
import torch

from dnas.cost.hardware import BitFusionConfig
from dnas.cost.layer import arch_layer_shapes
from dnas.cost.oracle import layer_cost
from dnas.cost.table import CostTable, TableError, build_table, import_csv, load_or_build
from dnas.space import load_space


def test_table_covers_every_grid_point(space, table):
    assert set(table.entries) == {c.key for c in space.costed_layers()}
    assert table.num_entries == space.num_grid_entries
    for cl in space.costed_layers():
        t = table.entries[cl.key]
        assert t.grid_shape == cl.grid_shape()
        assert torch.isfinite(t.latency_ms).all() and (t.latency_ms > 0).all()
        assert (t.energy_mj > 0).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_arch_cost_equals_cost_model_on_its_layers(space, table, seed):
    arch = space.random_arch(random.Random(seed))
    hw = BitFusionConfig()
    shapes = arch_layer_shapes(space, arch)
    lat = sum(layer_cost(s, hw).latency_ms for s in shapes.values())
    en = sum(layer_cost(s, hw).total_energy_nJ for s in shapes.values()) / 1e6
    got_lat, got_en = table.arch_cost(space, arch)
    assert got_lat == pytest.approx(lat, rel=1e-12)
    assert got_en == pytest.approx(en, rel=1e-12)


def test_extremes_bracket_every_architecture(space, table):
    ext = table.extremes(space)
    assert ext["min_latency_ms"] < ext["max_latency_ms"]
    rng = random.Random(3)
    for arch in [space.smallest_arch(), space.largest_arch()] + [
        space.random_arch(rng) for _ in range(20)
    ]:
        lat, en = table.arch_cost(space, arch)
        assert ext["min_latency_ms"] - 1e-12 <= lat <= ext["max_latency_ms"] + 1e-12
        assert ext["min_energy_mj"] - 1e-12 <= en <= ext["max_energy_mj"] + 1e-12


def test_largest_arch_is_at_most_dearest(space, table):
    # Dearest = the max over every choice, so the all-largest network cannot exceed it.
    assert (
        table.arch_cost(space, space.largest_arch())[0]
        <= table.extremes(space)["max_latency_ms"] + 1e-12
    )


def test_save_load_round_trip(space, table, tmp_path):
    path = table.save(tmp_path / "t.pt")
    loaded = CostTable.load(path, space, BitFusionConfig())
    assert loaded.header.content_hash == table.compute_hash()
    for key, t in table.entries.items():
        assert torch.equal(loaded.entries[key].latency_ms, t.latency_ms)
    assert not list(tmp_path.glob(".t.pt.*")), "temporary file left behind"


def test_foreign_hardware_refused_with_diff(space, table, tmp_path):
    path = table.save(tmp_path / "t.pt")
    with pytest.raises(TableError, match=r"wbuf_bytes.*dnas-lut"):
        CostTable.load(path, space, BitFusionConfig(wbuf_bytes=32768))


def test_foreign_space_refused(table, tmp_path):
    path = table.save(tmp_path / "t.pt")
    with pytest.raises(TableError, match=r"fmnist_mbv2.*not for space 'cifar_mbv2'"):
        CostTable.load(path, load_space("cifar_mbv2"))


def test_damaged_file_refused(space, table, tmp_path):
    path = table.save(tmp_path / "t.pt")
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(TableError, match="damaged"):
        CostTable.load(path, space)
    (tmp_path / "junk.pt").write_text("not a table")
    with pytest.raises(TableError, match="damaged or not a dnas table") as e:
        CostTable.load(tmp_path / "junk.pt", space)
    # one short reason, not torch's page on weights_only cut mid-sentence
    assert "(not a file torch.save wrote)" in str(e.value) and "weights_only" not in str(e.value)


def test_tampered_values_detected(space, table, tmp_path):
    path = table.save(tmp_path / "t.pt")
    payload = torch.load(path, weights_only=True)
    payload["entries"][0]["latency_ms"] = payload["entries"][0]["latency_ms"] * 2
    torch.save(payload, path)
    with pytest.raises(TableError, match="content hash"):
        CostTable.load(path, space)


def test_newer_format_refused(space, table, tmp_path):
    path = table.save(tmp_path / "t.pt")
    payload = torch.load(path, weights_only=True)
    payload["header"]["format_version"] = 99
    torch.save(payload, path)
    with pytest.raises(TableError, match="newer"):
        CostTable.load(path, space)


def test_csv_round_trip_as_measured_table(space, table, tmp_path):
    table.to_csv(tmp_path / "m.csv")
    measured = import_csv(tmp_path / "m.csv", space, "mydevice")
    assert measured.header.source == "measured"
    assert measured.header.hardware_name == "mydevice"
    for key, t in table.entries.items():
        assert torch.equal(measured.entries[key].energy_mj, t.energy_mj)
    arch = space.random_arch(random.Random(5))
    assert measured.arch_cost(space, arch) == table.arch_cost(space, arch)


def test_measured_csv_missing_entries_reported(space, table, tmp_path):
    table.to_csv(tmp_path / "m.csv")
    lines = (tmp_path / "m.csv").read_text().splitlines()
    (tmp_path / "short.csv").write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(TableError, match="3 grid point"):
        import_csv(tmp_path / "short.csv", space, "dev")
    bad = [*lines[:2], lines[2].replace(",dw,", ",dw,").rsplit(",", 1)[0] + ",abc"]
    (tmp_path / "bad.csv").write_text("\n".join(bad) + "\n")
    with pytest.raises(TableError, match=r"bad.csv:3"):
        import_csv(tmp_path / "bad.csv", space, "dev")


@pytest.mark.parametrize("value", ["inf", "nan", "1e300", "-1"])
def test_measured_costs_that_are_not_finite_are_refused(space, table, tmp_path, value):
    table.to_csv(tmp_path / "m.csv")
    lines = (tmp_path / "m.csv").read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + f",{value}"
    (tmp_path / "x.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(TableError, match=r"x.csv:6: latency_ms and energy_mj must be finite"):
        import_csv(tmp_path / "x.csv", space, "dev")


def test_a_grid_point_measured_twice_with_other_costs_is_refused(space, table, tmp_path):
    table.to_csv(tmp_path / "m.csv")
    lines = (tmp_path / "m.csv").read_text().splitlines()
    same = [*lines, lines[3]]  # a repeated identical row is harmless
    (tmp_path / "same.csv").write_text("\n".join(same) + "\n")
    import_csv(tmp_path / "same.csv", space, "dev")
    other = [*lines, lines[3].rsplit(",", 2)[0] + ",999.0,999.0"]
    (tmp_path / "dup.csv").write_text("\n".join(other) + "\n")
    with pytest.raises(TableError, match=rf"dup.csv:{len(other)}: .* measured on line 4 already"):
        import_csv(tmp_path / "dup.csv", space, "dev")


def test_a_table_path_that_is_a_directory_or_under_a_file_is_refused_before_building(
    space, tmp_path, monkeypatch
):
    from dnas.cost import table as table_module

    monkeypatch.setattr(table_module, "build_table", lambda *a, **k: pytest.fail("built"))
    with pytest.raises(TableError, match="is a directory; give the table's file"):
        load_or_build(space, BitFusionConfig(), tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(TableError, match=r"notes\.txt is a file, not a directory"):
        load_or_build(space, BitFusionConfig(), tmp_path / "notes.txt" / "t.pt")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_table_with_non_finite_costs_is_refused_on_load(space, table, tmp_path):
    import copy

    bad = copy.deepcopy(table)
    key = sorted(bad.entries)[3]
    bad.entries[key].latency_ms.view(-1)[0] = float("nan")
    bad.save(tmp_path / "nan.pt")  # a consistent hash: not "damaged", but no cost model
    with pytest.raises(TableError, match=rf"holds non-finite costs \(layer {key.role}"):
        CostTable.load(tmp_path / "nan.pt", space)


def test_unfittable_space_named(space):
    with pytest.raises(TableError, match="fit no tiling"):
        build_table(space, BitFusionConfig(obuf_bytes=64), backend="torch")


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_table_refused_in_one_line(space, table, tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"header": {}, "entries": [], "x": _Payload()}, evil)
    with pytest.raises(TableError, match="not a trusted table") as e:
        CostTable.load(evil, space)
    assert "\n" not in str(e.value) and "weights_only=False" not in str(e.value)
    assert "dnas-lut" in str(e.value)


def test_a_table_the_user_named_is_never_replaced(space, table, tmp_path, monkeypatch):
    from dnas.cost.table import default_table_path, load_or_build

    hw = BitFusionConfig()
    named = tmp_path / "pixel8.pt"
    named.write_bytes(b"a measured table someone spent a day on")
    before = named.read_bytes()
    with pytest.raises(TableError, match="dnas-lut"):
        load_or_build(space, hw, str(named))
    assert named.read_bytes() == before
    # the cache, by contrast, is rebuilt when damaged
    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    cached = default_table_path(space, hw)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"damaged")
    got, path, built = load_or_build(space, hw)
    assert built and path == cached and got.num_entries == table.num_entries
    # a named path that does not exist yet is built there
    fresh = tmp_path / "new.pt"
    _, path, built = load_or_build(space, hw, str(fresh))
    assert built and path == fresh and CostTable.load(fresh, space).num_entries == table.num_entries


def test_the_rebuild_hint_keeps_the_overrides_that_made_the_table(tmp_path):
    """A refused table's hint rebuilds *this* space and hardware: following it composes the same
    fingerprints (it dropped `space.bits` and hardware fields before)."""
    import shlex
    from importlib import resources

    import yaml
    from omegaconf import OmegaConf

    from dnas.cost.hardware import BitFusionConfig, load_hardware
    from dnas.cost.table import _rebuild_hint
    from dnas.space import SearchSpace
    from tests.runs import compose_config

    conf = yaml.safe_load((resources.files("dnas") / "conf/space/fmnist_mbv2.yaml").read_text())
    space = SearchSpace.from_dict({**conf, "bits": [4, 6, 8]})
    hw = BitFusionConfig.from_dict({**load_hardware("bitfusion").to_dict(), "freq_mhz": 1000})
    hint = _rebuild_hint(space, hw, tmp_path / "t.pt")
    command = shlex.split(hint.split("`")[1])
    assert command[0] == "dnas-lut"
    cfg = compose_config("lut", *command[1:])
    again = SearchSpace.from_dict(OmegaConf.to_container(cfg.space, resolve=True))
    assert again.fingerprint() == space.fingerprint()
    hw_again = BitFusionConfig.from_dict(OmegaConf.to_container(cfg.hardware, resolve=True))
    assert hw_again.fingerprint() == hw.fingerprint()
