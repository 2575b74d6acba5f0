"""Architectures: YAML round trips, validation against a space, largest/smallest/random."""

from __future__ import annotations

import dataclasses
import random

import pytest
import yaml

from dnas.space import (
    SKIP,
    Architecture,
    BlockChoice,
    ConvBits,
    SpaceError,
    builtin_space_names,
    load_space,
)


@pytest.fixture(scope="module")
def fmnist():
    return load_space("fmnist_mbv2")


def test_yaml_round_trip(fmnist, tmp_path):
    arch = fmnist.random_arch(0).with_metrics(latency_ms=1.25, energy_mj=0.5, target=2)
    path = arch.save(tmp_path / "sub" / "arch.yaml")
    back = Architecture.load(path)
    assert back == arch
    assert back.metrics == {"latency_ms": 1.25, "energy_mj": 0.5, "target": 2.0}
    assert back.space == "fmnist_mbv2"
    assert back.space_fingerprint == fmnist.fingerprint()
    # Plain YAML a human can read: kernel, width and named bits per block.
    data = yaml.safe_load(path.read_text())
    assert set(data["blocks"][0]) == {"kernel", "width", "expand", "dw", "project"}
    assert set(data["blocks"][0]["dw"]) == {"w_bits", "a_bits"}
    assert data["metrics"]["latency_ms"] == 1.25


def test_save_is_atomic_and_leaves_no_temp_files(fmnist, tmp_path):
    path = tmp_path / "arch.yaml"
    fmnist.largest_arch().save(path)
    fmnist.smallest_arch().save(path)
    assert Architecture.load(path) == fmnist.smallest_arch()
    assert [p.name for p in tmp_path.iterdir()] == ["arch.yaml"]


def test_save_failure_keeps_old_file(fmnist, tmp_path, monkeypatch):
    path = tmp_path / "arch.yaml"
    fmnist.largest_arch().save(path)
    before = path.read_text()

    def boom(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("dnas.atomic.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        fmnist.smallest_arch().save(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["arch.yaml"]


def test_skip_and_no_expand_round_trip(tmp_path):
    apq = load_space("apq_mbv2")
    arch = apq.smallest_arch()
    assert arch.blocks[0].expand is None  # the fixed first block has no expand conv
    assert arch.blocks[3].kernel == SKIP
    back = Architecture.load(arch.save(tmp_path / "a.yaml"))
    assert back == arch
    apq.validate_arch(back)


def test_metrics_do_not_affect_equality(fmnist):
    a = fmnist.largest_arch()
    assert a.with_metrics(latency_ms=3.0) == a
    assert a.with_metrics(latency_ms=3.0).with_metrics(energy_mj=1.0).metrics == {
        "latency_ms": 3.0,
        "energy_mj": 1.0,
    }


def test_bad_metric_is_refused(fmnist):
    with pytest.raises(SpaceError, match=r"^metrics\.latency_ms: must be a number"):
        fmnist.largest_arch().with_metrics(latency_ms="fast")


def test_load_reports_field_and_file(fmnist, tmp_path):
    d = fmnist.largest_arch().to_dict()
    d["blocks"][2]["dw"]["w_bit"] = 8
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(SpaceError, match=r"bad\.yaml: blocks\[2\]\.dw: unknown key"):
        Architecture.load(p)


@pytest.mark.parametrize("name", builtin_space_names())
def test_helpers_produce_valid_archs(name):
    space = load_space(name)
    rng = random.Random(1)
    for arch in (space.largest_arch(), space.smallest_arch(), space.random_arch(rng)):
        space.validate_arch(arch)
        assert arch.num_blocks == space.num_blocks


def test_largest_and_smallest(fmnist):
    big, small = fmnist.largest_arch(), fmnist.smallest_arch()
    for b, cb, cs in zip(fmnist.blocks, big.blocks, small.blocks, strict=True):
        assert cb.kernel == 7
        assert cb.width == b.widths[-1]
        assert cb.dw == ConvBits(8, 8)
        assert cs.kernel == (SKIP if b.can_skip else 3)
        assert cs.width == b.widths[0]
        assert cs.project == ConvBits(2, 2)
    assert big.depth == 6
    assert small.depth == 3
    assert big.stem == small.stem == ConvBits(8, 8)


def test_random_arch_is_seeded_and_covers_choices(fmnist):
    assert fmnist.random_arch(3) == fmnist.random_arch(random.Random(3))
    archs = [fmnist.random_arch(random.Random(i)) for i in range(200)]
    assert len(set(archs)) > 150
    kernels = {a.blocks[1].kernel for a in archs}
    assert kernels == {3, 5, 7, SKIP}
    assert {a.blocks[5].width for a in archs} == set(fmnist.blocks[5].widths)


def _replace_block(arch, i, **changes):
    blocks = list(arch.blocks)
    blocks[i] = dataclasses.replace(blocks[i], **changes)
    return dataclasses.replace(arch, blocks=tuple(blocks))


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        (
            {"kernel": 9},
            "arch.blocks[2].kernel",
            r"9 is not a choice of block 2 \(choices: \[3, 5, 7\]",
        ),
        ({"kernel": SKIP}, "arch.blocks[2].kernel", "'skip' is not a choice of block 2"),
        ({"width": 100}, "arch.blocks[2].width", "100 is not a choice of block 2"),
        ({"dw": ConvBits(9, 8)}, "arch.blocks[2].dw.w_bits", "9 is not a choice"),
        ({"project": ConvBits(8, 1)}, "arch.blocks[2].project.a_bits", "1 is not a choice"),
        ({"expand": None}, "arch.blocks[2].expand", "has an expand conv"),
    ],
)
def test_validate_arch_names_the_choice(fmnist, changes, field, reason):
    arch = _replace_block(fmnist.largest_arch(), 2, **changes)
    with pytest.raises(SpaceError, match=reason) as e:
        fmnist.validate_arch(arch)
    assert e.value.field == field


def test_validate_arch_block_count_and_fixed_bits(fmnist):
    arch = fmnist.largest_arch()
    with pytest.raises(SpaceError, match="has 5 blocks; space 'fmnist_mbv2' has 6"):
        fmnist.validate_arch(dataclasses.replace(arch, blocks=arch.blocks[:5]))
    with pytest.raises(SpaceError, match=r"^arch\.stem\.w_bits: 4 is not a choice"):
        fmnist.validate_arch(dataclasses.replace(arch, stem=ConvBits(4, 8)))


def test_validate_arch_no_expand_bits_where_no_expand():
    apq = load_space("apq_mbv2")
    arch = _replace_block(apq.largest_arch(), 0, expand=ConvBits(8, 8))
    with pytest.raises(SpaceError, match=r"^arch\.blocks\[0\]\.expand: block 0 has no expand"):
        apq.validate_arch(arch)


def test_arch_from_other_space_is_refused(fmnist):
    with pytest.raises(SpaceError):
        fmnist.validate_arch(load_space("cifar_mbv2").largest_arch())


def test_block_choice_rejects_bad_kernel():
    with pytest.raises(SpaceError, match="kernel: must be an integer"):
        BlockChoice("Skip", 8, None, ConvBits(8, 8), ConvBits(8, 8))
