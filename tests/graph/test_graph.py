"""The layer graph: validation, exact MACs/BitOps/size, the MobileNetV2 spaces as its producer."""

from __future__ import annotations

import dataclasses

import pytest

from dnas.cost.layer import arch_layer_shapes
from dnas.graph import (
    ChannelGroup,
    GraphChoice,
    GraphError,
    GraphLayer,
    LayerGraph,
    SkipChoice,
    choice_of_arch,
    graph_of_space,
)
from dnas.space import LayerKey, builtin_space_names, load_space

BITS = {"w_bits": (2, 4, 8), "a_bits": (2, 4, 8)}


def conv(name, in_groups, out_group, kernels=(3,), stride=1, depthwise=False, size=8, **kw):
    return GraphLayer(
        name=name,
        kind="conv",
        in_groups=tuple(in_groups),
        out_group=out_group,
        kernels=tuple(kernels),
        stride=stride,
        depthwise=depthwise,
        output_h=size,
        output_w=size,
        **{**BITS, **kw},
    )


def linear(name, in_groups, out_group, in_factor=1):
    return GraphLayer(
        name=name,
        kind="linear",
        in_groups=tuple(in_groups),
        out_group=out_group,
        kernels=(1,),
        stride=1,
        depthwise=False,
        output_h=1,
        output_w=1,
        in_factor=in_factor,
        **BITS,
    )


@pytest.fixture
def small() -> LayerGraph:
    """input(3) → a (stride 2, 8×8) → dw on a (k 3|5) → b (residual into a, skippable)
    → c reads cat(a, side) → flatten 2×2 → fc."""
    groups = (
        ChannelGroup.fixed("input", 3, "network input"),
        ChannelGroup("a", 16, (8, 12, 16)),
        ChannelGroup("side", 8, (4, 8)),
        ChannelGroup("c", 32, (16, 32)),
        ChannelGroup.fixed("fc", 10, "network output"),
    )
    layers = (
        conv("a", ["input"], "a", stride=2, im2col=True),
        conv("dw", ["a"], "a", kernels=(3, 5), depthwise=True),
        conv("b", ["a"], "a", kernels=(1,)),
        conv("side", ["a"], "side", kernels=(1,)),
        conv("c", ["a", "side"], "c", stride=4, size=2),
        linear("fc", ["c"], "fc", in_factor=4),
    )
    return LayerGraph(
        layers=layers,
        groups=groups,
        input_shape=(3, 16, 16),
        num_classes=10,
        skips=(SkipChoice("block", ("dw", "b")),),
        name="small",
    )


# --------------------------------------------------------------------------------- costs
def test_costs_hand_counted(small):
    choice = small.choice(
        widths={"a": 12, "side": 4, "c": 16},
        kernels={"dw": 5},
        bits={"a": (8, 8), "dw": (4, 2), "b": (2, 4), "side": (4, 4), "c": (2, 2), "fc": (8, 4)},
    )
    # Per layer: (MACs, weights, w_bits, a_bits), counted by hand.
    hand = {
        "a": (8 * 8 * 9 * 3 * 12, 9 * 3 * 12, 8, 8),  # im2col stem 3→12, k3, 8×8
        "dw": (8 * 8 * 25 * 12, 25 * 12, 4, 2),  # depthwise 12, k5
        "b": (8 * 8 * 12 * 12, 12 * 12, 2, 4),  # 1×1 12→12
        "side": (8 * 8 * 12 * 4, 12 * 4, 4, 4),  # 1×1 12→4
        "c": (2 * 2 * 9 * 16 * 16, 9 * 16 * 16, 2, 2),  # reads cat(12 + 4) = 16 → 16
        "fc": (16 * 4 * 10, 16 * 4 * 10, 8, 4),  # 16 channels × 2×2 flattened → 10
    }
    assert small.macs(choice) == sum(m for m, _, _, _ in hand.values()) == 62080
    assert small.bitops(choice) == sum(m * w * a for m, _, w, a in hand.values())
    assert small.size_bits(choice) == sum(n * w for _, n, w, _ in hand.values())
    assert small.size_kib(choice) == small.size_bits(choice) / 8192
    shapes = {s.name: s for s in small.layer_shapes(choice)}
    assert (shapes["c"].in_channels, shapes["fc"].in_channels) == (16, 64)
    assert shapes["dw"].groups == 12 and shapes["a"].im2col and not shapes["b"].im2col


def test_skipped_branch_is_not_counted(small):
    full = small.choice()
    skipped = small.choice(skipped=["block"])
    removed = {"dw": 8 * 8 * 25 * 16, "b": 8 * 8 * 16 * 16}
    assert small.macs(full) - small.macs(skipped) == sum(removed.values())
    assert [s.name for s in small.layer_shapes(skipped)] == ["a", "side", "c", "fc"]
    # A skipped layer's kernel and bits need not be given; they are checked when given.
    kernels = {k: v for k, v in skipped.kernels.items() if k not in removed}
    bits = {k: v for k, v in skipped.bits.items() if k not in removed}
    small.validate_choice(dataclasses.replace(skipped, kernels=kernels, bits=bits))
    with pytest.raises(GraphError, match=r"choice\.kernels\.dw: 7 is not a choice"):
        small.validate_choice(dataclasses.replace(skipped, kernels={**kernels, "dw": 7}))
    with pytest.raises(GraphError, match=r"choice\.kernels\.dw: missing"):
        small.validate_choice(dataclasses.replace(full, kernels=kernels))


def test_largest_and_smallest(small):
    big, tiny = small.largest_choice(), small.smallest_choice()
    assert big.widths["a"] == 16 and big.kernels["dw"] == 5 and big.bits["c"] == (8, 8)
    assert tiny.widths["a"] == 8 and tiny.kernels["dw"] == 3 and tiny.bits["c"] == (2, 2)
    assert tiny.skipped == {"block"} and not big.skipped
    assert small.macs(big) > small.macs(tiny) and small.bitops(big) > small.bitops(tiny)
    assert hash(big) == hash(small.choice()) and big == small.choice()
    with pytest.raises(TypeError):
        big.widths["a"] = 8  # read-only


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"widths": {"a": 10}},
            r"choice\.widths\.a: 10 is not a choice \(choices: \[8, 12, 16\]\)",
        ),
        ({"widths": {"nope": 1}}, r"choice\.widths: unknown group\(s\) \['nope'\]"),
        ({"widths": {"input": 1}}, r"choice\.widths\.input: 1 is not a choice"),
        ({"kernels": {"b": 3}}, r"choice\.kernels\.b: 3 is not a choice"),
        ({"bits": {"b": (3, 8)}}, r"choice\.bits\.b\.w_bits: 3 is not a choice"),
        ({"bits": {"b": (8,)}}, r"choice\.bits\.b: must be \(w_bits, a_bits\)"),
        ({"bits": {"zz": (8, 8)}}, r"choice\.bits: unknown layer\(s\) \['zz'\]"),
        ({"skipped": ["zz"]}, r"choice\.skipped: unknown skip\(s\) \['zz'\]"),
    ],
)
def test_choice_errors_name_the_entry(small, change, message):
    with pytest.raises(GraphError, match=message):
        small.choice(**change)


def test_choice_must_be_complete(small):
    full = small.largest_choice()
    widths = {k: v for k, v in full.widths.items() if k != "side"}
    with pytest.raises(GraphError, match=r"choice\.widths\.side: missing"):
        small.validate_choice(dataclasses.replace(full, widths=widths))


# ---------------------------------------------------------------------------- validation
def replace_layer(graph: LayerGraph, index: int, **changes) -> dict:
    layers = list(graph.layers)
    layers[index] = dataclasses.replace(layers[index], **changes)
    return {"layers": tuple(layers)}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda g: replace_layer(g, 4, in_groups=("a", "nope")),
            r"layers\[4\]\.in_groups: layer 'c': unknown group 'nope'",
        ),
        (
            lambda g: replace_layer(g, 3, out_group="x"),
            r"layers\[3\]\.out_group: .*unknown group 'x'",
        ),
        (
            lambda g: {"layers": (*g.layers, g.layers[2])},
            r"layers\[6\]\.name: duplicate name 'b'",
        ),
        (
            lambda g: {"groups": (*g.groups, ChannelGroup("spare", 4, (2, 4)))},
            r"groups: no layer reads or writes \['spare'\]",
        ),
        (
            lambda g: {"groups": (ChannelGroup("input", 3, (2, 3)), *g.groups[1:])},
            r"input_group: the input group 'input' must be fixed at the input's 3 channels",
        ),
        (lambda g: {"input_shape": (1, 16, 16)}, r"must be fixed at the input's 1 channels"),
        (lambda g: {"input_group": "inp"}, r"input_group: unknown group 'inp'"),
        (
            lambda g: {"skips": (SkipChoice("s", ("b", "q")),)},
            r"skips\[0\]\.layers: skip 's': unknown layers \['q'\]",
        ),
        (lambda g: {"num_classes": 0}, r"num_classes: must be >= 1"),
        (lambda g: {"layers": ()}, r"layers: must not be empty"),
    ],
)
def test_graph_errors_name_the_problem(small, edit, message):
    fields = {f.name: getattr(small, f.name) for f in dataclasses.fields(small)}
    with pytest.raises(GraphError, match=message):
        LayerGraph(**{**fields, **edit(small)})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: conv("dw", ["a"], "b", depthwise=True),
            r"dw\.in_groups: a depthwise conv reads and writes one group: in_groups must be "
            r"\['b'\]",
        ),
        (lambda: conv("c", ["a"], "c", kernels=(3, 5)), r"c\.kernels: only a depthwise conv"),
        (lambda: conv("c", ["a"], "c", kernels=(5, 3), depthwise=True), r"strictly increasing"),
        (lambda: conv("c", ["a"], "c", w_bits=(4, 2)), r"c\.w_bits: must be strictly increasing"),
        (lambda: conv("c", ["a"], "c", in_factor=4), r"c\.in_factor: must be 1 for a conv"),
        (lambda: conv("c", [], "c"), r"c\.in_groups: must not be empty"),
        (lambda: conv("c", ["a"], "c", stride=0), r"c\.stride: must be >= 1"),
        (
            lambda: conv("c", ["c"], "c", depthwise=True, im2col=True),
            r"only a dense conv is unrolled",
        ),
        (
            lambda: dataclasses.replace(linear("fc", ["a"], "fc"), stride=2),
            r"fc\.stride: must be 1 for a linear layer",
        ),
        (
            lambda: dataclasses.replace(linear("fc", ["a"], "fc"), kind="rnn"),
            r"fc\.kind: must be one of \['conv', 'linear'\]",
        ),
        (lambda: ChannelGroup("g", 8, (4, 4, 8)), r"g\.widths: must be strictly increasing"),
        (lambda: ChannelGroup("g", 8, (4, 6)), r"largest width 6 must be the group's 8 channels"),
        (lambda: ChannelGroup("g", 8, (0, 8)), r"g\.widths: must be >= 1"),
        (lambda: SkipChoice("s", ("a", "a")), r"s\.layers: has duplicates"),
    ],
)
def test_part_errors_name_the_problem(make, message):
    with pytest.raises(GraphError, match=message):
        make()


def test_concatenating_a_group_with_itself_counts_it_twice():
    g = LayerGraph(
        layers=(conv("a", ["input"], "a"), conv("b", ["a", "a"], "b", kernels=(1,))),
        groups=(
            ChannelGroup.fixed("input", 3),
            ChannelGroup("a", 4, (2, 4)),
            ChannelGroup.fixed("b", 5),
        ),
        input_shape=(3, 8, 8),
        num_classes=5,
    )
    shapes = g.layer_shapes(g.choice(widths={"a": 2}))
    assert shapes[1].in_channels == 4 and shapes[1].macs == 8 * 8 * 4 * 5


# ------------------------------------------------------------------------------ MobileNetV2
def layer_name(key: LayerKey) -> str:
    return key.role if key.block < 0 else f"blocks.{key.block}.{key.role}"


@pytest.mark.parametrize("name", ["fmnist_mbv2", "cifar_mbv2", "apq_mbv2"])
def test_graph_of_space_matches_costed_layers(name):
    space = load_space(name)
    graph = graph_of_space(space)
    costed = space.costed_layers()
    assert [layer.name for layer in graph.layers] == [layer_name(c.key) for c in costed]
    for c, layer in zip(costed, graph.layers, strict=True):
        assert graph.in_channels(layer) == c.in_channels, layer.name
        assert graph.out_channels(layer) == c.out_channels, layer.name
        assert (layer.stride, layer.output_h, layer.output_w) == (c.stride, c.output_h, c.output_h)
        assert layer.kernels == c.kernels, layer.name
        assert (layer.w_bits, layer.a_bits) == (c.w_bits, c.a_bits), layer.name
        assert (layer.im2col, layer.depthwise) == (c.im2col, c.key.role == "dw"), layer.name
        assert layer.kind == ("linear" if c.key.role == "classifier" else "conv")
        # The width axis of the cost grid is the searched group's widths.
        searched = layer.in_groups[0] if c.key.role in ("dw", "project") else layer.out_group
        assert graph.group(searched).widths == c.widths, layer.name
    assert [s.name for s in graph.skips] == [
        f"blocks.{b.index}" for b in space.blocks if b.can_skip
    ]
    for skip in graph.skips:
        block = space.blocks[int(skip.name.split(".")[1])]
        assert skip.layers == tuple(f"{skip.name}.{role}" for role in block.convs)
    searchable = {g.name for g in graph.groups if not g.is_fixed}
    assert searchable == {f"blocks.{b.index}.expand" for b in space.blocks if len(b.widths) > 1}


def test_graph_of_space_hand_checked():
    space = load_space("fmnist_mbv2")
    graph = graph_of_space(space)
    # Block 1 (24 → 24, stride 1) is an identity residual: its project writes the stage group that
    # block 0's project opened; block 2 (24 → 40, stride 2) opens a new one.
    assert graph.layer("blocks.1.project").out_group == "blocks.0.project"
    assert graph.layer("blocks.2.project").out_group == "blocks.2.project"
    assert graph.layer("blocks.2.expand").in_groups == ("blocks.0.project",)
    stage = graph.layers_of_group("blocks.0.project")
    assert [layer.name for layer in stage] == ["blocks.0.project", "blocks.1.project"]
    with pytest.raises(GraphError, match=r"group: no group 'nope' in graph 'fmnist_mbv2'"):
        graph.layers_of_group("nope")
    assert graph.layer("blocks.2.dw").norm == "blocks.2.bn2"
    stem = graph.layer_shapes(graph.largest_choice())[0]
    assert (stem.macs, stem.size_bits) == (14 * 14 * 9 * 1 * 16, 9 * 16 * 8)
    # Block 2 at width 96, kernel 5 and bits (4, 6): the hidden-width hand check of the space tests.
    choice = graph.choice(
        widths={"blocks.2.expand": 96},
        kernels={"blocks.2.dw": 5},
        bits={f"blocks.2.{r}": (4, 6) for r in ("expand", "dw", "project")},
    )
    shapes = {s.name: s for s in graph.layer_shapes(choice)}
    assert shapes["blocks.2.expand"].macs == 14 * 14 * 24 * 96
    assert shapes["blocks.2.dw"].macs == 7 * 7 * 25 * 96
    assert shapes["blocks.2.project"].bitops == 7 * 7 * 96 * 40 * 4 * 6


@pytest.mark.parametrize("name", ["fmnist_mbv2", "cifar_mbv2", "apq_mbv2"])
def test_costs_equal_the_cost_models_layer_shapes(name):
    """MACs, BitOps and size over the graph equal those of the cost model's own layer shapes."""
    space = load_space(name)
    graph = graph_of_space(space)
    archs = [space.largest_arch(), space.smallest_arch(), *(space.random_arch(s) for s in range(4))]
    for arch in archs:
        choice = choice_of_arch(space, arch)
        reference = arch_layer_shapes(space, arch)
        mine = graph.layer_shapes(choice)
        assert [s.name for s in mine] == [layer_name(k) for k in reference]
        for s, ref in zip(mine, reference.values(), strict=True):
            assert (s.in_channels, s.out_channels, s.kernel, s.stride) == (
                ref.in_channels,
                ref.out_channels,
                ref.kernel_size,
                ref.stride,
            )
            assert (s.groups, s.output_h, s.w_bits, s.a_bits) == (
                ref.groups,
                ref.output_h,
                ref.w_bits,
                ref.a_bits,
            )
            assert s.im2col == ref.im2col
        assert graph.macs(choice) == sum(r.macs for r in reference.values())
        assert graph.bitops(choice) == sum(r.macs * r.w_bits * r.a_bits for r in reference.values())
        assert graph.size_bits(choice) == sum(
            r.macs // r.output_h**2 * r.w_bits for r in reference.values()
        )


def test_every_builtin_space_has_a_graph():
    for name in builtin_space_names():
        graph = graph_of_space(load_space(name))
        assert graph.macs(graph.largest_choice()) > graph.macs(graph.smallest_choice())


def test_choice_of_arch_refuses_a_foreign_arch():
    with pytest.raises(Exception, match="blocks"):
        choice_of_arch(load_space("fmnist_mbv2"), load_space("cifar_mbv2").largest_arch())


def test_graph_choice_normalises_and_refuses():
    c = GraphChoice(widths={"a": 8}, kernels={}, bits={"a": [4, 8]}, skipped=["s"])
    assert c.bits["a"] == (4, 8) and c.skipped == frozenset({"s"})
    with pytest.raises(GraphError, match=r"widths: must be a mapping"):
        GraphChoice(widths=[8], kernels={}, bits={})
    with pytest.raises(GraphError, match=r"skipped: must be a set of names"):
        GraphChoice(widths={}, kernels={}, bits={}, skipped="block")
    with pytest.raises(GraphError, match=r"choice: must be a GraphChoice, got dict"):
        graph_of_space(load_space("fmnist_mbv2")).validate_choice({})
