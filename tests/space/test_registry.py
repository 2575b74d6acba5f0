"""Built-in spaces: loading by name or path, config round trips and fingerprints."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources

import pytest
import yaml

from dnas.space import SearchSpace, SpaceError, builtin_space_names, load_space

BUILTINS = ("apq_mbv2", "cifar_mbv2", "fmnist_mbv2")


def test_builtin_names_are_the_shipped_yaml_files():
    assert set(BUILTINS) <= set(builtin_space_names())
    root = resources.files("dnas") / "conf" / "space"
    for name in BUILTINS:
        assert (root / f"{name}.yaml").is_file()


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_loads_and_round_trips(name):
    space = load_space(name)
    assert space.name == name
    again = SearchSpace.from_dict(space.to_dict())
    assert again == space
    assert again.fingerprint() == space.fingerprint()
    assert again.blocks == space.blocks
    assert again.costed_layers() == space.costed_layers()
    # The canonical dict is a fixed point and survives YAML.
    assert again.to_dict() == space.to_dict()
    assert SearchSpace.from_dict(yaml.safe_load(yaml.safe_dump(space.to_dict()))) == space


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_name_field_matches_file(name):
    text = (resources.files("dnas") / "conf" / "space" / f"{name}.yaml").read_text()
    assert yaml.safe_load(text)["name"] == name


def test_default_space_is_fmnist():
    assert load_space().name == "fmnist_mbv2"


def test_unknown_name_lists_builtins():
    with pytest.raises(ValueError, match="unknown search space 'nope'") as e:
        load_space("nope")
    for name in BUILTINS:
        assert name in str(e.value)


def test_load_from_path(tmp_path):
    d = load_space("fmnist_mbv2").to_dict()
    d["name"] = "mine"
    d["stages"][0]["kernels"] = [3]
    p = tmp_path / "mine.yaml"
    p.write_text(yaml.safe_dump(d))
    space = load_space(p)
    assert space.name == "mine"
    assert space.blocks[0].kernels == (3,)
    assert space.fingerprint() != load_space("fmnist_mbv2").fingerprint()


def test_missing_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_space(tmp_path / "absent.yaml")


def test_non_mapping_file_is_refused(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("[1, 2]\n")
    with pytest.raises(SpaceError, match="must hold a mapping"):
        load_space(p)


def test_fingerprint_ignores_name_and_spelling():
    base = load_space("fmnist_mbv2")
    d = base.to_dict()
    d["name"] = "renamed"
    d["max_bits"] = 16
    for stage in d["stages"]:
        stage["kernels"] = list(reversed(stage["kernels"]))
    assert SearchSpace.from_dict(d).fingerprint() == base.fingerprint()
    # A one-block first stage spelled with ratios (3x-6x of 16 inputs) and with explicit widths.
    ratios = base.to_dict()
    ratios["stages"][0].update(n=1, skip_from=None)
    explicit = base.to_dict()
    explicit["stages"][0] = {"channels": 24, "n": 1, "widths": [48, 56, 64, 72, 80, 88, 96]}
    explicit["bits"] = [2, 3, 4, 5, 6, 7, 8]
    assert SearchSpace.from_dict(ratios).to_dict() != SearchSpace.from_dict(explicit).to_dict()
    assert (
        SearchSpace.from_dict(ratios).fingerprint() == SearchSpace.from_dict(explicit).fingerprint()
    )


def test_fingerprint_changes_with_any_choice():
    base = load_space("fmnist_mbv2")
    seen = {base.fingerprint()}
    for change in (
        lambda d: d["stages"][1].update(kernels=[3, 5]),
        lambda d: d["stages"][1].update(w_bits=[4, 8]),
        lambda d: d["stages"][1].update(a_bits=[2, 4, 8]),
        lambda d: d["stages"][2].update(skip_from=None),
        lambda d: d["stages"][2].update(expand_ratios=[3, 4]),
        lambda d: d["last"].update(channels=128),
        lambda d: d["classifier"].update(w_bits=[4, 8]),
        lambda d: d.update(num_classes=11),
        lambda d: d.update(resolution=32),
    ):
        d = base.to_dict()
        change(d)
        seen.add(SearchSpace.from_dict(d).fingerprint())
    assert len(seen) == 10


def test_fingerprint_is_stable_across_processes():
    code = "from dnas.space import load_space; print(load_space('apq_mbv2').fingerprint())"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout.strip()
        for seed in (0, 1)
    }
    assert outs == {load_space("apq_mbv2").fingerprint()}
    assert len(next(iter(outs))) == 16


def test_fingerprint_pinned():
    # Cached cost tables are keyed by this value: changing it on purpose means bumping
    # FINGERPRINT_VERSION (and every user rebuilds their tables).
    assert load_space("fmnist_mbv2").fingerprint() == "2fe64576ffed0e0c"


def test_omegaconf_container_and_dictconfig_load():
    omegaconf = pytest.importorskip("omegaconf")
    text = (resources.files("dnas") / "conf" / "space" / "fmnist_mbv2.yaml").read_text()
    cfg = omegaconf.OmegaConf.create(text)
    cfg.bits = [4, 6, 8]  # as a Hydra override `space.bits=[4,6,8]` would
    from_container = SearchSpace.from_dict(omegaconf.OmegaConf.to_container(cfg, resolve=True))
    from_dictconfig = SearchSpace.from_dict(cfg)
    assert from_container == from_dictconfig
    assert all(b.bits.w_bits == (4, 6, 8) == b.bits.a_bits for b in from_container.blocks)
    # Stem, last and classifier keep their own (fixed) bits.
    assert from_container.stem.bits.w_bits == (8,)
