"""Invalid space configs are refused with an error that names the offending field."""

from __future__ import annotations

import re
from typing import Any

import pytest

from dnas.space import BitChoices, SearchSpace, SpaceError, StageSpec, load_space


def fmnist() -> dict[str, Any]:
    return load_space("fmnist_mbv2").to_dict()


def refused(d: dict[str, Any], field: str, reason: str = "") -> SpaceError:
    with pytest.raises(SpaceError) as e:
        SearchSpace.from_dict(d)
    assert e.value.field == field, str(e.value)
    assert str(e.value).startswith(f"{field}: ")
    if reason:
        assert re.search(reason, e.value.reason), e.value.reason
    return e.value


def test_valid_base_config_loads():
    assert SearchSpace.from_dict(fmnist()).num_blocks == 6


@pytest.mark.parametrize("key", ["kernels", "widths", "w_bits", "a_bits"])
def test_empty_choice_list(key):
    d = fmnist()
    s = d["stages"][1]
    if key == "widths":
        del s["expand_ratios"], s["width_step"]
    s[key] = []
    refused(d, f"stages[1].{key}", "must not be empty")


def test_empty_bits_at_space_level():
    d = fmnist()
    d["bits"] = []
    refused(d, "bits", "must not be empty")


def test_empty_stages():
    d = fmnist()
    d["stages"] = []
    refused(d, "stages", "must not be empty")


@pytest.mark.parametrize("widths", [[96, 72], [72, 72, 96], [72, 96, 80]])
def test_widths_not_strictly_increasing(widths):
    d = fmnist()
    s = d["stages"][1]
    del s["expand_ratios"], s["width_step"]
    s["widths"] = widths
    refused(d, "stages[1].widths", "strictly increasing")


@pytest.mark.parametrize("widths", [[0, 8], [-8, 8]])
def test_widths_not_positive(widths):
    d = fmnist()
    s = d["stages"][1]
    del s["expand_ratios"], s["width_step"]
    s["widths"] = widths
    refused(d, "stages[1].widths", ">= 1")


def test_bits_not_increasing():
    d = fmnist()
    d["stages"][0]["w_bits"] = [8, 4]
    refused(d, "stages[0].w_bits", "strictly increasing")


def test_bits_below_two():
    d = fmnist()
    d["stages"][2]["a_bits"] = [1, 4, 8]
    refused(d, "stages[2].a_bits", ">= 2")


def test_bits_above_default_max():
    d = fmnist()
    d["stages"][2]["w_bits"] = [4, 8, 16]
    refused(d, "stages[2].w_bits", "16 bits exceeds the highest precision 8")


def test_bits_above_given_max_in_fixed_layer():
    d = fmnist()
    d["max_bits"] = 6
    d["stages"] = [{**s, "w_bits": [2, 4, 6], "a_bits": [2, 4, 6]} for s in d["stages"]]
    refused(d, "stem.w_bits", "8 bits exceeds the highest precision 6")


def test_max_bits_raised_allows_16():
    d = fmnist()
    d["max_bits"] = 16
    d["last"]["w_bits"] = [8, 16]
    space = SearchSpace.from_dict(d)
    assert space.last.bits.w_bits == (8, 16)
    with pytest.raises(SpaceError, match=r"^last\.w_bits: 16 bits exceeds the highest precision 8"):
        space.validate_bits(8)


def test_validate_bits_against_hardware():
    space = load_space("fmnist_mbv2")
    space.validate_bits(8)
    with pytest.raises(SpaceError, match=r"^stem\.w_bits: 8 bits exceeds the highest precision 4"):
        space.validate_bits(4)


@pytest.mark.parametrize("k", [4, 2])
def test_even_kernel(k):
    d = fmnist()
    d["stages"][0]["kernels"] = [3, k]
    refused(d, "stages[0].kernels", f"{k} is even")


def test_kernel_larger_than_depthwise_input():
    d = fmnist()
    d["stages"][1]["kernels"] = [3, 9]  # block 2 sees 14×14, block 3 sees 7×7
    err = refused(d, "stages[1].kernels")
    assert str(err) == (
        "stages[1].kernels: 9 is larger than the 7×7 input of block 3's depthwise conv"
    )


def test_kernel_at_the_strided_block_uses_its_unstrided_input():
    # Block 2 (stride 2) has a 14×14 depthwise input: k=9 is allowed there, not on 7×7 block 3.
    d = fmnist()
    d["stages"][1]["n"] = 1
    d["stages"][1]["skip_from"] = None
    d["stages"][1]["kernels"] = [3, 9]
    space = SearchSpace.from_dict(d)
    assert space.blocks[2].kernels == (3, 9)
    assert space.blocks[2].input_size == 14


def test_stem_kernel_larger_than_input():
    d = fmnist()
    d["resolution"] = 5
    d["stem"]["kernel"] = 7
    refused(d, "stem.kernel", "larger than the 5×5 input")


def test_skip_on_non_identity_block():
    d = fmnist()
    d["stages"][1]["skip_from"] = 0  # block 2: stride 2, 24→40
    refused(d, "stages[1].skip_from", r"block 0 of the stage \(block 2\) has no identity residual")


def test_skip_from_beyond_stage():
    d = fmnist()
    d["stages"][0]["skip_from"] = 2
    refused(d, "stages[0].skip_from", "no block of the 2-block stage")


def test_skip_is_not_a_kernel():
    d = fmnist()
    d["stages"][0]["kernels"] = [3, "skip"]
    refused(d, "stages[0].kernels", "skip_from")


@pytest.mark.parametrize(
    ("where", "allowed_sample"),
    [((), "stages"), (("stem",), "stride"), (("stages", 1), "skip_from"), (("last",), "channels")],
)
def test_unknown_key_lists_allowed(where, allowed_sample):
    d = fmnist()
    target = d
    for part in where:
        target = target[part]
    target["kernal"] = [3]
    field = {(): "space", ("stem",): "stem", ("stages", 1): "stages[1]", ("last",): "last"}[where]
    err = refused(d, field, r"unknown key\(s\) \['kernal'\]; allowed:")
    assert allowed_sample in err.reason


def test_unknown_classifier_key():
    d = fmnist()
    d["classifier"]["num_classes"] = 3
    refused(d, "classifier", "unknown key")


def test_missing_required_key():
    d = fmnist()
    del d["stages"][0]["n"]
    refused(d, "stages[0]", r"missing required key\(s\) \['n'\]")


def test_expand_false_needs_input_width():
    d = fmnist()
    d["stages"][0] = {"channels": 24, "n": 1, "expand": False, "widths": [32]}
    refused(d, "stages[0].widths", r"widths must be \[16\]")


def test_expand_false_defaults_to_input_width():
    d = fmnist()
    d["stages"][0] = {"channels": 24, "n": 1, "expand": False}
    space = SearchSpace.from_dict(d)
    assert space.blocks[0].widths == (16,)
    assert [c.key.role for c in space.costed_layers()[1:3]] == ["dw", "project"]


def test_widths_and_ratios_together():
    d = fmnist()
    d["stages"][0]["widths"] = [48, 96]
    refused(d, "stages[0].widths", "either widths")


@pytest.mark.parametrize("ratios", [[3], [6, 3], [0, 6]])
def test_bad_expand_ratios(ratios):
    d = fmnist()
    d["stages"][0]["expand_ratios"] = ratios
    refused(d, "stages[0].expand_ratios")


def test_ratios_that_give_no_width():
    d = fmnist()
    d["stages"][0]["expand_ratios"] = [3.1, 3.2]  # 49.6..51.2: no multiple of 8
    refused(d, "stages[0].expand_ratios", "no multiple of 8")


@pytest.mark.parametrize(
    ("key", "value"), [("resolution", 0), ("num_classes", "10"), ("in_channels", True)]
)
def test_top_level_integers(key, value):
    d = fmnist()
    d[key] = value
    refused(d, key)


def test_non_integer_channels():
    d = fmnist()
    d["stages"][2]["channels"] = 80.0
    refused(d, "stages[2].channels", "must be an integer")


def test_direct_construction_validates_too():
    with pytest.raises(SpaceError, match=r"^kernels: 4 is even"):
        StageSpec(channels=24, n=2, kernels=(3, 4))
    with pytest.raises(SpaceError, match=r"^w_bits: must be strictly increasing"):
        BitChoices((4, 2), (8,))


def test_kernels_are_sorted_and_singletons_allowed():
    d = fmnist()
    d["stages"][0]["kernels"] = [7, 3]
    d["stages"][0]["w_bits"] = [4]
    space = SearchSpace.from_dict(d)
    assert space.blocks[0].kernels == (3, 7)
    assert space.blocks[0].bits.w_bits == (4,)
