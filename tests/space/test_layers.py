"""Costed layers: grid axes, shapes the cost model sees, and architecture grid indices."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from dnas.cost.layer import LayerShape, arch_layer_shapes, layer_shape
from dnas.space import SKIP, CostedLayer, LayerKey, SpaceError, builtin_space_names, load_space


@pytest.fixture(scope="module")
def fmnist():
    return load_space("fmnist_mbv2")


def layers_by_key(space) -> dict[LayerKey, CostedLayer]:
    return {c.key: c for c in space.costed_layers()}


def test_fmnist_block_2_hand_checked(fmnist):
    b = fmnist.blocks[2]
    assert (b.in_channels, b.out_channels, b.stride, b.input_size, b.output_size) == (
        24,
        40,
        2,
        14,
        7,
    )
    assert not b.has_residual and not b.can_skip
    assert b.widths == (72, 80, 88, 96, 104, 112, 120, 128, 136, 144)  # 3×24 .. 6×24 step 8
    layers = layers_by_key(fmnist)
    expand, dw, project = (layers[LayerKey(r, 2)] for r in ("expand", "dw", "project"))
    # Grid point: width 96, w_bits 4, a_bits 6 (dw: kernel 5; pointwise convs have one kernel).
    assert layer_shape(expand, 0, 3, 2, 4) == LayerShape(24, 96, 1, 1, 14, 1, 4, 6)
    assert layer_shape(dw, 1, 3, 2, 4) == LayerShape(96, 96, 5, 2, 7, 1, 4, 6, groups=96)
    assert layer_shape(project, 0, 3, 2, 4, batch=4) == LayerShape(96, 40, 1, 1, 7, 4, 4, 6)
    assert expand.kernels == project.kernels == (1,)
    assert dw.kernels == (3, 5, 7)
    assert expand.widths == dw.widths == project.widths == b.widths
    assert dw.grid_shape() == (3, 10, 7, 7)
    assert expand.grid_shape() == (1, 10, 7, 7)


def test_fmnist_fixed_layers(fmnist):
    layers = fmnist.costed_layers()
    stem, last, fc = layers[0], layers[-2], layers[-1]
    assert stem.key == LayerKey("stem") and stem.key.block == -1
    assert layer_shape(stem, 0, 0, 0, 0) == LayerShape(1, 16, 3, 2, 14, 1, 8, 8, im2col=True)
    assert layer_shape(last, 0, 0, 0, 0) == LayerShape(80, 256, 1, 1, 7, 1, 8, 8)
    assert layer_shape(fc, 0, 0, 0, 0) == LayerShape(256, 10, 1, 1, 1, 1, 8, 8)
    assert stem.grid_shape() == last.grid_shape() == fc.grid_shape() == (1, 1, 1, 1)


def test_network_order_and_keys(fmnist):
    keys = [c.key for c in fmnist.costed_layers()]
    expected = [LayerKey("stem")]
    for i in range(6):
        expected += [LayerKey("expand", i), LayerKey("dw", i), LayerKey("project", i)]
    expected += [LayerKey("last"), LayerKey("classifier")]
    assert keys == expected
    assert len(set(keys)) == len(keys)


def test_fmnist_grid_entries(fmnist):
    # Hidden-width counts per block: 3×–6× of 16, 24, 24, 40, 40, 80 in steps of 8.
    counts = [len(b.widths) for b in fmnist.blocks]
    assert counts == [7, 10, 10, 16, 16, 31]
    # Per block: (expand 1 + dw 3 kernels + project 1) × widths × 7 w-bits × 7 a-bits;
    # plus stem, last and classifier with one point each.
    assert fmnist.num_grid_entries == sum(counts) * 49 * 5 + 3 == 22053
    assert sum(math.prod(c.grid_shape()) for c in fmnist.costed_layers()) == 22053


def test_every_layer_shape_is_consistent():
    for name in builtin_space_names():
        space = load_space(name)
        for c in space.costed_layers():
            last = tuple(n - 1 for n in c.grid_shape())
            big = layer_shape(c, *last)
            assert (big.in_channels, big.out_channels) == (c.in_channels, c.out_channels)
            assert big.kernel_size <= max(big.input_h, 1) or c.key.role == "classifier"
            if c.key.role == "dw":
                assert big.groups == big.in_channels == big.out_channels == c.widths[-1]


def test_shape_index_out_of_range(fmnist):
    dw = layers_by_key(fmnist)[LayerKey("dw", 0)]
    with pytest.raises(IndexError, match=r"dw\[0\]: k=3 is outside 0..2"):
        layer_shape(dw, 3, 0, 0, 0)


def test_arch_indices_of_largest_and_smallest():
    for name in builtin_space_names():
        space = load_space(name)
        layers = layers_by_key(space)
        big = space.arch_indices(space.largest_arch())
        assert set(big) == set(layers)
        for key, idx in big.items():
            assert idx == tuple(n - 1 for n in layers[key].grid_shape()), key
        small = space.arch_indices(space.smallest_arch())
        for key, idx in small.items():
            assert idx == (0, 0, 0, 0), key


def test_skipped_blocks_are_absent(fmnist):
    small = fmnist.smallest_arch()
    idx = fmnist.arch_indices(small)
    skipped = {i for i, c in enumerate(small.blocks) if c.kernel == SKIP}
    assert skipped == {1, 3, 5}
    assert {k.block for k in idx} == {-1, 0, 2, 4}
    assert len(idx) == 3 + 3 * 3


def test_arch_indices_pick_the_chosen_values(fmnist):
    arch = fmnist.random_arch(random.Random(7))
    layers = layers_by_key(fmnist)
    for key, (k, w, wb, ab) in fmnist.arch_indices(arch).items():
        c = layers[key]
        if key.block < 0:
            bits = getattr(arch, "classifier" if key.role == "classifier" else key.role)
            assert (k, w) == (0, 0)
        else:
            choice = arch.blocks[key.block]
            bits = choice.conv_bits(key.role)
            assert c.widths[w] == choice.width
            assert c.kernels[k] == (choice.kernel if key.role == "dw" else 1)
        assert (c.w_bits[wb], c.a_bits[ab]) == (bits.w_bits, bits.a_bits)


def test_arch_layer_shapes(fmnist):
    arch = fmnist.largest_arch()
    shapes = arch_layer_shapes(fmnist, arch, batch=2)
    assert shapes[LayerKey("dw", 5)] == LayerShape(480, 480, 7, 1, 7, 2, 8, 8, groups=480)
    assert shapes[LayerKey("expand", 0)] == LayerShape(16, 96, 1, 1, 14, 2, 8, 8)


def test_arch_indices_validates(fmnist):
    arch = fmnist.largest_arch()
    blocks = list(arch.blocks)
    blocks[0] = dataclasses.replace(blocks[0], width=97)
    with pytest.raises(SpaceError, match=r"arch\.blocks\[0\]\.width"):
        fmnist.arch_indices(dataclasses.replace(arch, blocks=tuple(blocks)))


def test_kernel_choices(fmnist):
    assert fmnist.kernel_choices(0) == (3, 5, 7)
    assert fmnist.kernel_choices(1) == (3, 5, 7, SKIP)


def test_apq_space():
    apq = load_space("apq_mbv2")
    assert apq.num_blocks == 22
    searchable = apq.searchable_blocks
    assert len(searchable) == 21
    assert [b.index for b in searchable] == list(range(1, 22))
    first = apq.blocks[0]
    assert (first.in_channels, first.out_channels, first.expand) == (32, 16, False)
    assert first.kernel_choices == (3,) and first.widths == (32,)
    assert [b.out_channels for b in searchable] == [24] * 4 + [40] * 4 + [80] * 4 + [96] * 4 + [
        192
    ] * 4 + [320]
    assert [b.output_size for b in apq.blocks] == [112] + [56] * 4 + [28] * 4 + [14] * 8 + [7] * 5
    # Hidden widths: 4×–6× the block input in steps of 8.
    for b in searchable:
        assert b.widths == tuple(range(4 * b.in_channels, 6 * b.in_channels + 1, 8)), b.index
        assert b.kernels == (3, 5, 7)
    assert apq.blocks[1].widths == (64, 72, 80, 88, 96)
    assert apq.blocks[21].widths[0] == 768 and apq.blocks[21].widths[-1] == 1152
    # Depth {2, 3, 4} per 4-block stage: blocks 3 and 4 of each may be skipped.
    for stage in range(1, 6):
        assert [b.can_skip for b in apq.blocks if b.stage == stage] == [False, False, True, True]
    layers = layers_by_key(apq)
    assert layer_shape(layers[LayerKey("stem")], 0, 0, 0, 0) == LayerShape(
        3, 32, 3, 2, 112, 1, 8, 8, im2col=True
    )
    assert layer_shape(layers[LayerKey("last")], 0, 0, 0, 0) == LayerShape(
        320, 1280, 1, 1, 7, 1, 8, 8
    )
    assert layers[LayerKey("classifier")].out_channels == 1000
    assert LayerKey("expand", 0) not in layers


def test_cifar_kernels_fit_feature_maps():
    cifar = load_space("cifar_mbv2")
    for b in cifar.blocks:
        assert b.kernels[-1] <= b.input_size
    assert cifar.final_size == 4
    assert cifar.blocks[0].expand is False


def test_layer_key_is_typed_hashable_and_ordered():
    assert LayerKey("dw", 3) == LayerKey("dw", 3)
    assert len({LayerKey("dw", 3), LayerKey("dw", 3), LayerKey("project", 3)}) == 2
    assert sorted([LayerKey("project", 1), LayerKey("dw", 2), LayerKey("dw", 1)]) == [
        LayerKey("dw", 1),
        LayerKey("dw", 2),
        LayerKey("project", 1),
    ]
    with pytest.raises(SpaceError, match="unknown layer role 'conv'"):
        LayerKey("conv", 1)
    with pytest.raises(SpaceError, match="needs a block index"):
        LayerKey("dw")
    with pytest.raises(SpaceError, match="must be -1"):
        LayerKey("stem", 0)


def test_same_padding_rounds_sizes_up(fmnist):
    d = fmnist.to_dict()
    d["resolution"] = 27  # stem stride 2: ceil(27 / 2) = 14, then block 2 (stride 2): 7
    space = type(fmnist).from_dict(d)
    assert space.stem_output_size == 14
    assert [b.output_size for b in space.blocks] == [14, 14, 7, 7, 7, 7]
    d["resolution"] = 26  # 13, then ceil(13 / 2) = 7
    space = type(fmnist).from_dict(d)
    assert [b.input_size for b in space.blocks] == [13, 13, 13, 7, 7, 7]
    assert layers_by_key(space)[LayerKey("dw", 2)].output_h == 7
