"""The layer graph: searchable layers, channel groups and residual skips as data, and exact costs.

The costs are hardware-agnostic: MACs, BitOps (as EdMIPS and FracBits count them) and model size.
A ``LayerGraph`` says, for every conv and linear layer, what its cost depends on: its input and
output channel groups, kernel, stride, output size and bit-width choices. A *channel group* is a set
of channels whose count is one choice: every layer whose outputs are added together (a residual),
or a depthwise conv and its input, write the same group. A ``GraphChoice`` picks one option of
every choice; ``LayerGraph.layer_shapes`` resolves it into plain layer shapes and ``macs``,
``bitops`` and ``size_bits`` sum them. Producers: ``dnas.graph.mbv2.graph_of_space`` (the
MobileNetV2 spaces) and ``dnas.graph.convert.convert`` (any traceable ``nn.Module``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

from dnas.errors import DnasError

LAYER_KINDS: tuple[str, ...] = ("conv", "linear")


class GraphError(DnasError):
    """An invalid layer graph, graph choice or network to convert.

    The message starts with the dotted path of the offending field or the qualified name of the
    offending layer (``layers[3].in_groups: ...``, ``blocks.2.dw: ...``).

    Attributes:
        field: where the problem is.
        reason: what is wrong there.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


def _check_int(value: object, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GraphError(where, f"must be an integer, got {value!r}")
    if value < minimum:
        raise GraphError(where, f"must be >= {minimum}, got {value}")
    return value


def check_increasing(values: object, where: str) -> tuple[int, ...]:
    """A non-empty, strictly increasing tuple of positive integers (errors name ``where``)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise GraphError(where, f"must be a tuple of integers, got {values!r}")
    items = tuple(values)
    if not items:
        raise GraphError(where, "must not be empty")
    for v in items:
        _check_int(v, where)
    for a, b in itertools.pairwise(items):
        if b <= a:
            raise GraphError(where, f"must be strictly increasing, got {list(items)}")
    return items


def _check_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise GraphError(where, f"must be a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True)
class ChannelGroup:
    """A set of channels whose count is one choice, shared by every layer that writes or reads it.

    Attributes:
        name: the group's name (a producer names it after its first writing layer).
        channels: the largest channel count, which the network's weights have.
        widths: the channel-count choices, strictly increasing, the last one ``channels``; a fixed
            group has the single choice ``(channels,)``.
        fixed_by: why a group has a single width when a producer fixed it (``"network input"``,
            ``"network output"``, an op the converter cannot follow, ...); empty otherwise.

    Example:
        >>> ChannelGroup("layer1.0.conv1", 16, (8, 12, 16)).is_fixed
        False
        >>> ChannelGroup.fixed("input", 3).widths
        (3,)
    """

    name: str
    channels: int
    widths: tuple[int, ...]
    fixed_by: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, "name")
        _check_int(self.channels, f"{self.name}.channels")
        object.__setattr__(self, "widths", check_increasing(self.widths, f"{self.name}.widths"))
        if self.widths[-1] != self.channels:
            raise GraphError(
                f"{self.name}.widths",
                f"the largest width {self.widths[-1]} must be the group's {self.channels} "
                "channels (the weights are sized for the largest)",
            )
        if not isinstance(self.fixed_by, str):
            raise GraphError(f"{self.name}.fixed_by", f"must be a string, got {self.fixed_by!r}")

    @classmethod
    def fixed(cls, name: str, channels: int, fixed_by: str = "") -> ChannelGroup:
        """A group with the single width ``channels``."""
        return cls(name, channels, (channels,), fixed_by)

    @property
    def is_fixed(self) -> bool:
        return len(self.widths) == 1


@dataclass(frozen=True)
class GraphLayer:
    """One conv or linear layer and what its cost depends on.

    The layer's input channels are ``in_factor × Σ channels(g) for g in in_groups`` (a
    concatenation reads several groups; a linear layer after a flatten reads each channel
    ``in_factor = H·W`` times), its output channels those of ``out_group``.

    Attributes:
        name: the module's qualified name (``layer1.0.conv1``), unique in the graph.
        kind: ``"conv"`` (``nn.Conv2d``) or ``"linear"`` (``nn.Linear``).
        in_groups: the input's channel groups, in channel order (a group concatenated with itself
            appears twice).
        out_group: the output's channel group. A depthwise conv reads and writes the same group.
        kernels: kernel-size choices, ascending; several only for a depthwise conv; ``(1,)`` for
            a linear layer.
        stride: the stride (square).
        depthwise: ``groups == in_channels == out_channels`` (else ``groups == 1``; no other
            grouping is modelled).
        output_h: output feature-map height (1 for a linear layer).
        output_w: output feature-map width (1 for a linear layer).
        w_bits: weight bit-width choices, increasing.
        a_bits: input-activation bit-width choices, increasing.
        im2col: the network's first layer, a dense conv whose input the front end unrolls.
        in_factor: input features per input channel (the flattened spatial size before a linear
            layer); 1 for a conv.
        norm: the qualified name of the batch norm that directly follows the layer, if any.
    """

    name: str
    kind: str
    in_groups: tuple[str, ...]
    out_group: str
    kernels: tuple[int, ...]
    stride: int
    depthwise: bool
    output_h: int
    output_w: int
    w_bits: tuple[int, ...]
    a_bits: tuple[int, ...]
    im2col: bool = False
    in_factor: int = 1
    norm: str | None = None

    def __post_init__(self) -> None:
        where = _check_name(self.name, "name")
        if self.kind not in LAYER_KINDS:
            raise GraphError(
                f"{where}.kind", f"must be one of {list(LAYER_KINDS)}, got {self.kind!r}"
            )
        if isinstance(self.in_groups, str) or not isinstance(self.in_groups, Iterable):
            raise GraphError(
                f"{where}.in_groups", f"must be a tuple of names, got {self.in_groups!r}"
            )
        object.__setattr__(self, "in_groups", tuple(self.in_groups))
        if not self.in_groups:
            raise GraphError(f"{where}.in_groups", "must not be empty")
        for g in self.in_groups:
            _check_name(g, f"{where}.in_groups")
        _check_name(self.out_group, f"{where}.out_group")
        object.__setattr__(self, "kernels", check_increasing(self.kernels, f"{where}.kernels"))
        for name in ("stride", "output_h", "output_w", "in_factor"):
            _check_int(getattr(self, name), f"{where}.{name}")
        object.__setattr__(self, "w_bits", check_increasing(self.w_bits, f"{where}.w_bits"))
        object.__setattr__(self, "a_bits", check_increasing(self.a_bits, f"{where}.a_bits"))
        for name in ("depthwise", "im2col"):
            if not isinstance(getattr(self, name), bool):
                raise GraphError(
                    f"{where}.{name}", f"must be true or false, got {getattr(self, name)!r}"
                )
        if self.norm is not None:
            _check_name(self.norm, f"{where}.norm")
        if self.depthwise:
            if self.in_groups != (self.out_group,):
                raise GraphError(
                    f"{where}.in_groups",
                    f"a depthwise conv reads and writes one group: in_groups must be "
                    f"[{self.out_group!r}], got {list(self.in_groups)}",
                )
            if self.im2col:
                raise GraphError(f"{where}.im2col", "only a dense conv is unrolled (im2col)")
        elif len(self.kernels) != 1:
            raise GraphError(
                f"{where}.kernels",
                f"only a depthwise conv has kernel choices, got {list(self.kernels)}",
            )
        if self.kind == "linear":
            fixed = {
                "kernels": (self.kernels, (1,)),
                "stride": (self.stride, 1),
                "output_h": (self.output_h, 1),
                "output_w": (self.output_w, 1),
                "depthwise": (self.depthwise, False),
                "im2col": (self.im2col, False),
            }
            for name, (value, required) in fixed.items():
                if value != required:
                    raise GraphError(
                        f"{where}.{name}", f"must be {required!r} for a linear layer, got {value!r}"
                    )
        elif self.in_factor != 1:
            raise GraphError(f"{where}.in_factor", f"must be 1 for a conv, got {self.in_factor}")


@dataclass(frozen=True)
class SkipChoice:
    """A residual branch that may be removed (its block then passes its input through).

    Attributes:
        name: the choice's name (the branch's common module prefix, e.g. ``layer1.0``).
        layers: qualified names of the layers the skip removes.
    """

    name: str
    layers: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_name(self.name, "name")
        if isinstance(self.layers, str) or not isinstance(self.layers, Iterable):
            raise GraphError(
                f"{self.name}.layers", f"must be a tuple of names, got {self.layers!r}"
            )
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise GraphError(f"{self.name}.layers", "must not be empty")
        for name in self.layers:
            _check_name(name, f"{self.name}.layers")
        if len(set(self.layers)) != len(self.layers):
            raise GraphError(f"{self.name}.layers", f"has duplicates: {list(self.layers)}")


@dataclass(frozen=True)
class ResolvedLayer:
    """One layer of a resolved graph choice, as every cost model sees it (batch 1).

    Attributes:
        name: the layer's qualified name.
        in_channels: input channels (input features for a linear layer).
        out_channels: output channels.
        kernel: kernel size (square; 1 for a linear layer).
        stride: stride.
        groups: 1, or ``in_channels`` for a depthwise conv.
        output_h: output height.
        output_w: output width.
        w_bits: weight bits.
        a_bits: input-activation bits.
        im2col: whether the front end unrolls the input.
    """

    name: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    groups: int
    output_h: int
    output_w: int
    w_bits: int
    a_bits: int
    im2col: bool = False

    @property
    def weights(self) -> int:
        """Weight count, ``k² · in/groups · out`` (no bias, no batch norm)."""
        return self.kernel**2 * (self.in_channels // self.groups) * self.out_channels

    @property
    def macs(self) -> int:
        """Multiply-accumulates per image: ``output_h · output_w · weights``."""
        return self.output_h * self.output_w * self.weights

    @property
    def bitops(self) -> int:
        """``macs · w_bits · a_bits``."""
        return self.macs * self.w_bits * self.a_bits

    @property
    def size_bits(self) -> int:
        """``weights · w_bits``."""
        return self.weights * self.w_bits


@dataclass(frozen=True)
class GraphChoice:
    """One option of every choice of a layer graph.

    Attributes:
        widths: group name → channel count, for every group.
        kernels: layer name → kernel size.
        bits: layer name → ``(w_bits, a_bits)``.
        skipped: names of the skipped residual branches.

    Layers of skipped branches may be absent from ``kernels`` and ``bits``; every other entry must
    be present (``LayerGraph.choice`` fills unset entries with the largest option). The mappings
    are read-only.
    """

    widths: Mapping[str, int]
    kernels: Mapping[str, int]
    bits: Mapping[str, tuple[int, int]]
    skipped: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for name in ("widths", "kernels", "bits"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise GraphError(name, f"must be a mapping, got {value!r}")
        object.__setattr__(self, "widths", MappingProxyType(dict(self.widths)))
        object.__setattr__(self, "kernels", MappingProxyType(dict(self.kernels)))
        object.__setattr__(
            self, "bits", MappingProxyType({k: tuple(v) for k, v in self.bits.items()})
        )
        if isinstance(self.skipped, str) or not isinstance(self.skipped, Iterable):
            raise GraphError("skipped", f"must be a set of names, got {self.skipped!r}")
        object.__setattr__(self, "skipped", frozenset(self.skipped))

    def __hash__(self) -> int:
        return hash(
            (
                frozenset(self.widths.items()),
                frozenset(self.kernels.items()),
                frozenset(self.bits.items()),
                self.skipped,
            )
        )


@dataclass(frozen=True)
class LayerGraph:
    """A network's searchable layers in execution order, its channel groups and skips.

    Validation at construction names the problem: an unknown group or layer, a depthwise conv
    whose input and output groups differ, widths that do not increase, a group no layer uses, ...

    Attributes:
        layers: every conv and linear layer, in execution order.
        groups: every channel group some layer reads or writes.
        input_shape: one input's shape without the batch, channels first (``(C, H, W)``).
        num_classes: the network's outputs per image (its output is ``[B, num_classes]``).
        skips: residual branches that may be removed.
        input_group: the group of the network input's channels (fixed, ``input_shape[0]``).
        name: a label for messages (the space's or the model class's name).

    Example:
        >>> from dnas.graph.mbv2 import graph_of_space
        >>> from dnas.space import load_space
        >>> g = graph_of_space(load_space("fmnist_mbv2"))
        >>> g.layer("blocks.0.dw").kernels, g.group("blocks.0.expand").widths[:3]
        ((3, 5, 7), (48, 56, 64))
        >>> g.macs(g.largest_choice()) > g.macs(g.smallest_choice())
        True
    """

    layers: tuple[GraphLayer, ...]
    groups: tuple[ChannelGroup, ...]
    input_shape: tuple[int, ...]
    num_classes: int
    skips: tuple[SkipChoice, ...] = ()
    input_group: str = "input"
    name: str = ""

    def __post_init__(self) -> None:
        for attr, cls in (("layers", GraphLayer), ("groups", ChannelGroup), ("skips", SkipChoice)):
            items = tuple(getattr(self, attr))
            object.__setattr__(self, attr, items)
            for i, item in enumerate(items):
                if not isinstance(item, cls):
                    raise GraphError(f"{attr}[{i}]", f"must be a {cls.__name__}, got {item!r}")
            names = [item.name for item in items]
            for i, name in enumerate(names):
                if name in names[:i]:
                    raise GraphError(f"{attr}[{i}].name", f"duplicate name {name!r}")
        if not self.layers:
            raise GraphError("layers", "must not be empty")
        shape = tuple(self.input_shape)
        object.__setattr__(self, "input_shape", shape)
        if not shape:
            raise GraphError("input_shape", "must not be empty")
        for v in shape:
            _check_int(v, "input_shape")
        _check_int(self.num_classes, "num_classes")
        if not isinstance(self.name, str):
            raise GraphError("name", f"must be a string, got {self.name!r}")
        groups = {g.name: g for g in self.groups}
        if self.input_group not in groups:
            raise GraphError("input_group", f"unknown group {self.input_group!r}")
        inp = groups[self.input_group]
        if inp.widths != (shape[0],):
            raise GraphError(
                "input_group",
                f"the input group {inp.name!r} must be fixed at the input's {shape[0]} channels, "
                f"has widths {list(inp.widths)}",
            )
        used: set[str] = set()
        for i, layer in enumerate(self.layers):
            for attr, names in (("in_groups", layer.in_groups), ("out_group", (layer.out_group,))):
                for g in names:
                    if g not in groups:
                        raise GraphError(
                            f"layers[{i}].{attr}", f"layer {layer.name!r}: unknown group {g!r}"
                        )
                    used.add(g)
        # The input group may be unused: an op the converter cannot follow may read the input.
        unused = [g.name for g in self.groups if g.name not in used and g.name != self.input_group]
        if unused:
            raise GraphError("groups", f"no layer reads or writes {unused}")
        layer_names = {layer.name for layer in self.layers}
        for i, skip in enumerate(self.skips):
            unknown = [n for n in skip.layers if n not in layer_names]
            if unknown:
                raise GraphError(
                    f"skips[{i}].layers", f"skip {skip.name!r}: unknown layers {unknown}"
                )

    # ------------------------------------------------------------------------------- lookups
    @cached_property
    def _layers(self) -> dict[str, GraphLayer]:
        return {layer.name: layer for layer in self.layers}

    @cached_property
    def _groups(self) -> dict[str, ChannelGroup]:
        return {g.name: g for g in self.groups}

    @cached_property
    def _skips(self) -> dict[str, SkipChoice]:
        return {s.name: s for s in self.skips}

    def layer(self, name: str) -> GraphLayer:
        """The layer with qualified name ``name``; a GraphError if there is none."""
        try:
            return self._layers[name]
        except KeyError:
            raise GraphError("layer", f"no layer {name!r} in graph {self.name!r}") from None

    def group(self, name: str) -> ChannelGroup:
        try:
            return self._groups[name]
        except KeyError:
            raise GraphError("group", f"no group {name!r} in graph {self.name!r}") from None

    def skip(self, name: str) -> SkipChoice:
        try:
            return self._skips[name]
        except KeyError:
            raise GraphError("skip", f"no skip {name!r} in graph {self.name!r}") from None

    def in_channels(self, layer: GraphLayer) -> int:
        """The layer's input channels (features) at the largest widths."""
        return layer.in_factor * sum(self._groups[g].channels for g in layer.in_groups)

    def out_channels(self, layer: GraphLayer) -> int:
        """The layer's output channels at the largest widths."""
        return self._groups[layer.out_group].channels

    def layers_of_group(self, name: str) -> tuple[GraphLayer, ...]:
        """The layers that write group ``name``."""
        self.group(name)
        return tuple(layer for layer in self.layers if layer.out_group == name)

    # ------------------------------------------------------------------------------- choices
    def choice(
        self,
        widths: Mapping[str, int] | None = None,
        kernels: Mapping[str, int] | None = None,
        bits: Mapping[str, tuple[int, int]] | None = None,
        skipped: Iterable[str] = (),
    ) -> GraphChoice:
        """A validated choice; unset widths, kernels and bits take the largest option."""
        c = GraphChoice(
            widths={g.name: g.channels for g in self.groups} | dict(widths or {}),
            kernels={layer.name: layer.kernels[-1] for layer in self.layers} | dict(kernels or {}),
            bits={layer.name: (layer.w_bits[-1], layer.a_bits[-1]) for layer in self.layers}
            | dict(bits or {}),
            skipped=frozenset(skipped),
        )
        self.validate_choice(c)
        return c

    def largest_choice(self) -> GraphChoice:
        """The largest width, kernel and bits everywhere; nothing skipped."""
        return self.choice()

    def smallest_choice(self) -> GraphChoice:
        """The smallest width, kernel and bits everywhere; every skippable branch skipped."""
        return self.choice(
            widths={g.name: g.widths[0] for g in self.groups},
            kernels={layer.name: layer.kernels[0] for layer in self.layers},
            bits={layer.name: (layer.w_bits[0], layer.a_bits[0]) for layer in self.layers},
            skipped=[s.name for s in self.skips],
        )

    def skipped_layers(self, choice: GraphChoice) -> frozenset[str]:
        """Names of the layers that ``choice``'s skipped branches remove."""
        return frozenset(n for s in choice.skipped for n in self.skip(s).layers)

    def validate_choice(self, choice: GraphChoice) -> None:
        """Raise a GraphError naming the first entry of ``choice`` this graph does not offer."""
        if not isinstance(choice, GraphChoice):
            raise GraphError("choice", f"must be a GraphChoice, got {type(choice).__name__}")
        for what, entries, known in (
            ("widths", choice.widths, self._groups),
            ("kernels", choice.kernels, self._layers),
            ("bits", choice.bits, self._layers),
            ("skipped", choice.skipped, self._skips),
        ):
            unknown = sorted(str(n) for n in entries if n not in known)
            if unknown:
                kind = {"widths": "group", "skipped": "skip"}.get(what, "layer")
                raise GraphError(f"choice.{what}", f"unknown {kind}(s) {unknown}")
        for g in self.groups:
            if g.name not in choice.widths:
                raise GraphError(f"choice.widths.{g.name}", "missing")
            w = choice.widths[g.name]
            if w not in g.widths:
                raise GraphError(
                    f"choice.widths.{g.name}", f"{w!r} is not a choice (choices: {list(g.widths)})"
                )
        removed = self.skipped_layers(choice)
        for layer in self.layers:
            # The layers of a skipped branch run at no kernel and no bits: their entries may be
            # absent, and are checked when present.
            if layer.name in choice.kernels:
                k = choice.kernels[layer.name]
                if k not in layer.kernels:
                    raise GraphError(
                        f"choice.kernels.{layer.name}",
                        f"{k!r} is not a choice (choices: {list(layer.kernels)})",
                    )
            elif layer.name not in removed:
                raise GraphError(f"choice.kernels.{layer.name}", "missing")
            if layer.name in choice.bits:
                self._check_bits(layer, choice.bits[layer.name])
            elif layer.name not in removed:
                raise GraphError(f"choice.bits.{layer.name}", "missing")

    @staticmethod
    def _check_bits(layer: GraphLayer, bits: tuple[int, ...]) -> None:
        where = f"choice.bits.{layer.name}"
        if len(bits) != 2:
            raise GraphError(where, f"must be (w_bits, a_bits), got {bits!r}")
        for name, v, allowed in (
            ("w_bits", bits[0], layer.w_bits),
            ("a_bits", bits[1], layer.a_bits),
        ):
            if v not in allowed:
                raise GraphError(
                    f"{where}.{name}", f"{v!r} is not a choice (choices: {list(allowed)})"
                )

    # --------------------------------------------------------------------------------- costs
    def layer_shapes(self, choice: GraphChoice) -> tuple[ResolvedLayer, ...]:
        """Every layer ``choice`` runs, resolved, in execution order (skipped layers absent)."""
        self.validate_choice(choice)
        removed = self.skipped_layers(choice)
        shapes = []
        for layer in self.layers:
            if layer.name in removed:
                continue
            out = choice.widths[layer.out_group]
            w_bits, a_bits = choice.bits[layer.name]
            shapes.append(
                ResolvedLayer(
                    name=layer.name,
                    in_channels=layer.in_factor * sum(choice.widths[g] for g in layer.in_groups),
                    out_channels=out,
                    kernel=choice.kernels[layer.name],
                    stride=layer.stride,
                    groups=out if layer.depthwise else 1,
                    output_h=layer.output_h,
                    output_w=layer.output_w,
                    w_bits=w_bits,
                    a_bits=a_bits,
                    im2col=layer.im2col,
                )
            )
        return tuple(shapes)

    def macs(self, choice: GraphChoice) -> int:
        """Multiply-accumulates per image: Σ ``H_out·W_out·k²·C_in/g·C_out`` over the layers run.

        Convolutions and linear layers only (no batch norm, activation, pooling or residual add).
        """
        return sum(s.macs for s in self.layer_shapes(choice))

    def bitops(self, choice: GraphChoice) -> int:
        """BitOps per image, Σ ``macs · w_bits · a_bits`` (as EdMIPS and FracBits count them)."""
        return sum(s.bitops for s in self.layer_shapes(choice))

    def size_bits(self, choice: GraphChoice) -> int:
        """Model size in bits: Σ ``weights · w_bits`` over the layers run.

        Conv and linear weights only: biases and batch-norm parameters are excluded (they fold
        into the per-channel scale and offset of a deployed integer layer).
        """
        return sum(s.size_bits for s in self.layer_shapes(choice))

    def size_kib(self, choice: GraphChoice) -> float:
        """``size_bits / 8192``: exact, 8192 being a power of two (for sizes below 2⁵³ bits)."""
        return self.size_bits(choice) / 8192
