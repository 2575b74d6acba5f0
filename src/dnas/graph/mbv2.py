"""The MobileNetV2 search spaces as one producer of the layer graph (Sandler et al. 2018).

Layer names are the qualified module names of ``dnas.supernet.QuantMobileNetV2`` (``stem``,
``blocks.{i}.expand``, ``blocks.{i}.dw``, ``blocks.{i}.project``, ``last``, ``classifier``), so
a graph choice and an ``Architecture`` address the same modules.
"""

from __future__ import annotations

from functools import lru_cache

from dnas.graph.graph import ChannelGroup, GraphChoice, GraphLayer, LayerGraph, SkipChoice
from dnas.space import Architecture, BitChoices, SearchSpace


def _bits(choices: BitChoices) -> dict[str, tuple[int, ...]]:
    return {"w_bits": choices.w_bits, "a_bits": choices.a_bits}


@lru_cache(maxsize=32)  # a space is immutable and hashable, and so is its graph
def graph_of_space(space: SearchSpace) -> LayerGraph:
    """The layer graph of a MobileNetV2 search space.

    Groups: ``input`` (the image channels), ``stem``, one per block hidden width named after the
    block's expand conv (``blocks.{i}.expand``, its width choices; a block without an expand conv
    reads and writes its input's group), one per stage output named after the stage's first project
    conv (the identity-residual blocks of the stage write the same group), ``last`` and
    ``classifier``. Only the hidden widths are searched: every other group is fixed. Each block's
    depthwise conv has the block's kernel choices, and each block that may be skipped (``"skip"`` is
    one of its kernel choices) is a ``SkipChoice`` named ``blocks.{i}`` removing its convs.

    Layers correspond one to one, in order, to ``space.costed_layers()``.

    Example:
        >>> from dnas.space import load_space
        >>> g = graph_of_space(load_space("fmnist_mbv2"))
        >>> [s.name for s in g.skips]
        ['blocks.1', 'blocks.3', 'blocks.5']
    """
    stem = space.stem
    groups = [
        ChannelGroup.fixed("input", space.in_channels, "network input"),
        ChannelGroup.fixed("stem", stem.channels),
    ]
    layers = [
        GraphLayer(
            name="stem",
            kind="conv",
            in_groups=("input",),
            out_group="stem",
            kernels=(stem.kernel,),
            stride=stem.stride,
            depthwise=False,
            output_h=space.stem_output_size,
            output_w=space.stem_output_size,
            im2col=True,
            norm="stem_bn",
            **_bits(stem.bits),
        )
    ]
    skips = []
    current = "stem"
    for b in space.blocks:
        prefix = f"blocks.{b.index}"
        bits = _bits(b.bits)
        block_layers = []
        hidden = current
        if b.expand:
            hidden = f"{prefix}.expand"
            groups.append(ChannelGroup(hidden, b.widths[-1], b.widths))
            block_layers.append(
                GraphLayer(
                    name=hidden,
                    kind="conv",
                    in_groups=(current,),
                    out_group=hidden,
                    kernels=(1,),
                    stride=1,
                    depthwise=False,
                    output_h=b.input_size,
                    output_w=b.input_size,
                    norm=f"{prefix}.bn1",
                    **bits,
                )
            )
        block_layers.append(
            GraphLayer(
                name=f"{prefix}.dw",
                kind="conv",
                in_groups=(hidden,),
                out_group=hidden,
                kernels=b.kernels,
                stride=b.stride,
                depthwise=True,
                output_h=b.output_size,
                output_w=b.output_size,
                norm=f"{prefix}.bn2",
                **bits,
            )
        )
        if b.has_residual:
            out = current
        else:
            out = f"{prefix}.project"
            groups.append(ChannelGroup.fixed(out, b.out_channels))
        block_layers.append(
            GraphLayer(
                name=f"{prefix}.project",
                kind="conv",
                in_groups=(hidden,),
                out_group=out,
                kernels=(1,),
                stride=1,
                depthwise=False,
                output_h=b.output_size,
                output_w=b.output_size,
                norm=f"{prefix}.bn3",
                **bits,
            )
        )
        layers.extend(block_layers)
        if b.can_skip:
            skips.append(SkipChoice(prefix, tuple(layer.name for layer in block_layers)))
        current = out
    groups.append(ChannelGroup.fixed("last", space.last.channels))
    layers.append(
        GraphLayer(
            name="last",
            kind="conv",
            in_groups=(current,),
            out_group="last",
            kernels=(1,),
            stride=1,
            depthwise=False,
            output_h=space.final_size,
            output_w=space.final_size,
            norm="last_bn",
            **_bits(space.last.bits),
        )
    )
    groups.append(ChannelGroup.fixed("classifier", space.num_classes, "network output"))
    layers.append(
        GraphLayer(
            name="classifier",
            kind="linear",
            in_groups=("last",),
            out_group="classifier",
            kernels=(1,),
            stride=1,
            depthwise=False,
            output_h=1,
            output_w=1,
            **_bits(space.classifier.bits),
        )
    )
    return LayerGraph(
        layers=tuple(layers),
        groups=tuple(groups),
        input_shape=(space.in_channels, space.resolution, space.resolution),
        num_classes=space.num_classes,
        skips=tuple(skips),
        name=space.name,
    )


def choice_of_arch(space: SearchSpace, arch: Architecture) -> GraphChoice:
    """The choice of ``graph_of_space(space)`` that ``arch`` makes.

    A skipped block's kernel and bits are left out (its layers do not run); its width is kept.

    Raises:
        SpaceError: ``arch`` is not an architecture of ``space``.
    """
    space.validate_arch(arch)
    widths: dict[str, int] = {}
    kernels: dict[str, int] = {"stem": space.stem.kernel, "last": 1, "classifier": 1}
    bits = {
        "stem": (arch.stem.w_bits, arch.stem.a_bits),
        "last": (arch.last.w_bits, arch.last.a_bits),
        "classifier": (arch.classifier.w_bits, arch.classifier.a_bits),
    }
    skipped = []
    for b, c in zip(space.blocks, arch.blocks, strict=True):
        prefix = f"blocks.{b.index}"
        if b.expand:
            widths[f"{prefix}.expand"] = c.width
        if c.skipped:
            skipped.append(prefix)
            continue
        for role in b.convs:
            conv = c.conv_bits(role)
            assert conv is not None  # validate_arch: expand bits exist iff the block expands
            bits[f"{prefix}.{role}"] = (conv.w_bits, conv.a_bits)
            kernels[f"{prefix}.{role}"] = c.kernel if role == "dw" else 1
    graph = graph_of_space(space)
    fixed = {g.name: g.channels for g in graph.groups if g.is_fixed}
    choice = GraphChoice(widths=fixed | widths, kernels=kernels, bits=bits, skipped=skipped)
    graph.validate_choice(choice)
    return choice
