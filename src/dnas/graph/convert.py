"""The torch.fx converter: a user's ``nn.Module`` → its ``LayerGraph`` (groups by union-find).

``convert`` traces the module with torch.fx (Conv2d and Linear kept whole), runs it once on an
example input (``ShapeProp``) for every tensor's shape, and walks the graph in execution order.
Each Conv2d and Linear output opens a channel group; what the converter knows about the ops in
between decides how groups are tied:

- element-wise ops with two activation operands (a residual add, a gating multiply) tie the
  operands' groups into one (a 1-channel operand broadcasts and ties nothing);
- a depthwise conv writes the group it reads;
- batch norm, activations, pooling, dropout, padding and resizing of H and W pass the groups on;
- ``torch.cat`` over channels concatenates the groups (they stay separate; the consumer reads the
  list), over any other dimension ties them;
- ``flatten`` (and a ``view``/``reshape`` that flattens) multiplies each channel by the spatial
  size, which the next Linear records as its ``in_factor``; ``squeeze``, ``unsqueeze``,
  ``transpose`` and ``permute`` of the spatial dimensions pass the groups on;
- a reduction or softmax over channels (``x.mean(1)``, ``softmax(x, 1)``) fixes the widths it
  reads (its result depends on how many channels there are); a reduction's output gets a fixed
  group of its own.

Anything else between layers (an op the converter does not know, a custom leaf module, a reshape
whose channel size is neither -1 nor the tensor's own ``size(1)``, indexing over channels) fixes
the width of every group it touches and gives its output a fixed group: one ``ConvertWarning``
per layer whose width this fixes names the layer and the op.

Refused with a ``GraphError`` (the network could not be costed exactly): grouped convs other than
depthwise, non-square kernels or strides, dilation, a module called twice (shared weights), a
Linear on a non-2-D input, functional convs/linears and matrix products (their MACs would be
missing), unknown modules with weight matrices, and a model whose output is not one
``[B, num_classes]`` tensor.
"""

from __future__ import annotations

import difflib
import math
import operator
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from dnas.graph.graph import (
    ChannelGroup,
    GraphError,
    GraphLayer,
    LayerGraph,
    SkipChoice,
    check_increasing,
)


class ConvertWarning(UserWarning):
    """A layer's width was fixed because an op next to it could not be followed (or a kernel
    choice could not be applied)."""


# ---------------------------------------------------------------------------------- op tables
# Modules that keep the channel dimension where it is, channel for channel.
_CHANNELWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.AlphaDropout,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Upsample,
    nn.ZeroPad2d,
    nn.ConstantPad2d,
    nn.ReflectionPad2d,
    nn.ReplicationPad2d,
    nn.Softmax,
    nn.LogSoftmax,
)
# Normalisations whose parameters are shaped by more than the channels: followed by no rule.
_NORM_MODULES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.InstanceNorm2d,
    nn.LocalResponseNorm,
)
# Functions and methods of one activation whose output keeps its channels.
_UNARY_FUNCTIONS: frozenset[Any] = frozenset(
    {
        F.relu,
        F.relu6,
        F.leaky_relu,
        F.elu,
        F.selu,
        F.celu,
        F.gelu,
        F.silu,
        F.mish,
        F.hardswish,
        F.hardsigmoid,
        F.hardtanh,
        F.softplus,
        F.sigmoid,
        F.tanh,
        F.dropout,
        F.dropout2d,
        F.alpha_dropout,
        F.max_pool2d,
        F.avg_pool2d,
        F.adaptive_avg_pool2d,
        F.adaptive_max_pool2d,
        F.interpolate,
        F.pad,
        F.softmax,
        F.log_softmax,
        torch.relu,
        torch.sigmoid,
        torch.tanh,
        torch.exp,
        torch.clamp,
        torch.clip,
        torch.zeros_like,
        torch.ones_like,
        torch.empty_like,
        torch.full_like,
        operator.neg,
    }
)
_UNARY_METHODS: frozenset[str] = frozenset(
    {
        "relu",
        "relu_",
        "sigmoid",
        "sigmoid_",
        "tanh",
        "tanh_",
        "exp",
        "clamp",
        "clamp_",
        "clip",
        "neg",
        "contiguous",
        "clone",
        "detach",
        "float",
        "double",
        "half",
        "to",
        "type_as",
        "softmax",
        "log_softmax",
    }
)
# Element-wise ops of several operands: the operands' channels are the same channels.
_ELEMENTWISE_FUNCTIONS: frozenset[Any] = frozenset(
    {
        operator.add,
        operator.iadd,
        operator.sub,
        operator.isub,
        operator.mul,
        operator.imul,
        operator.truediv,
        operator.itruediv,
        torch.add,
        torch.sub,
        torch.mul,
        torch.div,
        torch.maximum,
        torch.minimum,
    }
)
_ELEMENTWISE_METHODS: frozenset[str] = frozenset(
    {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "maximum", "minimum"}
)
_ADDS: frozenset[Any] = frozenset({operator.add, operator.iadd, torch.add, "add", "add_"})
_REDUCTIONS: frozenset[Any] = frozenset(
    {torch.mean, torch.sum, torch.amax, torch.amin, "mean", "sum", "amax", "amin"}
)
_RESHAPES: frozenset[Any] = frozenset({torch.reshape, "view", "reshape"})
_FLATTENS: frozenset[Any] = frozenset({torch.flatten, "flatten"})
_CATS: frozenset[Any] = frozenset({torch.cat, torch.concat})
# Layout ops, followed when they leave the batch and channel dimensions where they are.
_LAYOUTS: frozenset[Any] = frozenset(
    {
        torch.squeeze,
        torch.unsqueeze,
        torch.transpose,
        torch.permute,
        "squeeze",
        "unsqueeze",
        "transpose",
        "permute",
    }
)
# Ops with multiply-accumulates of their own, which no layer of the graph would count.
_UNCOUNTED: frozenset[Any] = frozenset(
    {
        F.conv1d,
        F.conv2d,
        F.conv3d,
        F.conv_transpose1d,
        F.conv_transpose2d,
        F.conv_transpose3d,
        F.linear,
        F.bilinear,
        torch.conv2d,
        torch.matmul,
        torch.mm,
        torch.bmm,
        torch.einsum,
        torch.addmm,
        torch.baddbmm,
        operator.matmul,
        "matmul",
        "mm",
        "bmm",
        "addmm",
    }
)


# ----------------------------------------------------------------------------- value kinds
@dataclass(frozen=True)
class _Channels:
    """An activation whose dimension 1 holds the channels of ``segments`` in order, each channel
    repeated ``factor`` times (the flattened spatial size)."""

    segments: tuple[int, ...]
    factor: int = 1


class _Const:
    """A tensor that does not depend on the network input (a parameter, buffer or constant)."""


_CONST = _Const()


@dataclass
class _Groups:
    """Union-find over channel groups, with the reasons a group's width is fixed."""

    parent: list[int] = field(default_factory=list)
    channels: list[int] = field(default_factory=list)
    origin: list[str] = field(default_factory=list)
    # Fixed by design (the network input and output, a constant): no warning.
    structural: dict[int, list[str]] = field(default_factory=dict)
    # Fixed because an op could not be followed: one warning per layer writing the group.
    ops: dict[int, list[str]] = field(default_factory=dict)

    def new(self, channels: int, origin: str) -> int:
        self.parent.append(len(self.parent))
        self.channels.append(channels)
        self.origin.append(origin)
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        assert self.channels[ra] == self.channels[rb], "tied groups of different sizes"
        lo, hi = min(ra, rb), max(ra, rb)  # the earlier group is the root: names stay stable
        self.parent[hi] = lo
        for reasons in (self.structural, self.ops):
            if hi in reasons:
                reasons.setdefault(lo, []).extend(reasons.pop(hi))

    def fix(self, i: int, reason: str, structural: bool = False) -> None:
        reasons = (self.structural if structural else self.ops).setdefault(self.find(i), [])
        if reason not in reasons:
            reasons.append(reason)


@dataclass
class _Layer:
    """A conv or linear layer found in the trace, before the group names are known."""

    node: fx.Node
    name: str
    kind: str
    in_segments: tuple[int, ...]
    out: int
    kernels: tuple[int, ...]
    stride: int
    depthwise: bool
    output_h: int
    output_w: int
    in_factor: int = 1
    norm: str | None = None


_SOFTMAXES: frozenset[Any] = frozenset({F.softmax, F.log_softmax, "softmax", "log_softmax"})


def _softmax_over_channels(dim: Any, shape: tuple[int, ...] | None) -> bool:
    """Whether a softmax over ``dim`` of a tensor of ``shape`` normalises over dimension 1."""
    if shape is None or len(shape) < 2:
        return False
    if dim is None:  # torch's legacy implicit dim: 1 for 2-D and 4-D inputs, 0 for 1-D and 3-D
        return len(shape) in (2, 4)
    return isinstance(dim, int) and dim % len(shape) == 1


def _meta(node: Any) -> Any:
    return node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None


def _shape(node: Any) -> tuple[int, ...] | None:
    """The node's output shape if it is one tensor, else None."""
    m = _meta(node)
    return tuple(m.shape) if isinstance(m, TensorMetadata) else None


def _has_tensor(meta: Any) -> bool:
    if isinstance(meta, TensorMetadata):
        return True
    if isinstance(meta, (tuple, list)):
        return any(_has_tensor(m) for m in meta)
    if isinstance(meta, dict):
        return any(_has_tensor(m) for m in meta.values())
    return False


def _op_name(node: fx.Node, modules: Mapping[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"module {node.target} ({type(modules[str(node.target)]).__name__})"
    if node.op == "call_method":
        return f"method .{node.target}() ({node.name})"
    target = node.target
    name = getattr(target, "__name__", None) or repr(target)
    return f"function {name} ({node.name})"


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def _is_channel_size(value: Any) -> bool:
    """Whether ``value`` is a traced ``t.size(1)``, ``t.size()[1]`` or ``t.shape[1]``."""
    if not isinstance(value, fx.Node):
        return False
    if value.op == "call_method" and value.target == "size":
        return _arg(value, 1, "dim") == 1
    if value.op == "call_function" and value.target is operator.getitem and value.args[1] == 1:
        src = value.args[0]
        return isinstance(src, fx.Node) and (
            (src.op == "call_method" and src.target == "size" and len(src.args) == 1)
            or (src.op == "call_function" and src.target is getattr and src.args[1] == "shape")
        )
    return False


def _spec_text(value: Any) -> str:
    return f"{value.name} (traced)" if isinstance(value, fx.Node) else repr(value)


def _dims(dim: Any, ndim: int) -> tuple[int, ...] | None:
    """Reduction dims normalised to ``0..ndim-1``, or None for all of them."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(d % ndim for d in dims)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    out = tuple(fractions)
    if not out:
        raise GraphError("width_fractions", "must not be empty")
    for f in out:
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise GraphError("width_fractions", f"each must be in (0, 1], got {list(out)}")
    if 1 not in out:
        raise GraphError(
            "width_fractions",
            f"must include 1.0 (the module's own width, which its weights have), got {list(out)}",
        )
    return out


def _check_kernel_map(kernels: Mapping[int, Sequence[int]] | None) -> dict[int, tuple[int, ...]]:
    if kernels is None:
        return {}
    if not isinstance(kernels, Mapping):
        raise GraphError("kernels", f"must map a kernel size to its choices, got {kernels!r}")
    out = {}
    for k, choices in kernels.items():
        values = tuple(sorted(set(choices)))
        for v in (k, *values):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1 or v % 2 == 0:
                raise GraphError(
                    f"kernels[{k}]", f"kernel sizes must be odd positive integers, got {v!r}"
                )
        if k not in values:
            raise GraphError(
                f"kernels[{k}]",
                f"the layers' own kernel {k} must stay a choice, got {list(values)}",
            )
        out[k] = values
    return out


def _check_layer_bits(
    layer_bits: Mapping[str, Any] | None, names: Sequence[str]
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """``layer_bits`` as increasing tuples; an unknown layer or a malformed entry is named."""
    out: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    if not layer_bits:
        return out
    if not isinstance(layer_bits, Mapping):
        raise GraphError(
            "layer_bits", f"must map layer names to (w_bits, a_bits), got {layer_bits!r}"
        )
    for name, bits in layer_bits.items():
        if name not in names:
            near = difflib.get_close_matches(str(name), list(names), n=3)
            raise GraphError(
                f"layer_bits.{name}",
                "no such Conv2d or Linear layer"
                + (
                    f"; did you mean {', '.join(near)}?" if near else f"; the layers: {list(names)}"
                ),
            )
        if isinstance(bits, (str, bytes)) or not isinstance(bits, Sequence) or len(bits) != 2:
            raise GraphError(
                f"layer_bits.{name}", f"must be (w_bits, a_bits), two lists, got {bits!r}"
            )
        out[str(name)] = (
            check_increasing(bits[0], f"layer_bits.{name}.w_bits"),
            check_increasing(bits[1], f"layer_bits.{name}.a_bits"),
        )
    return out


def width_choices(channels: int, fractions: Sequence[float]) -> tuple[int, ...]:
    """``round(f · channels)`` for each fraction (half up, at least 1), deduplicated, increasing.

    Example:
        >>> width_choices(16, (0.5, 0.75, 1.0)), width_choices(2, (0.25, 0.5, 0.75, 1.0))
        ((8, 12, 16), (1, 2))
    """
    return tuple(sorted({max(1, math.floor(f * channels + 0.5)) for f in fractions}))


class _Tracer(fx.Tracer):
    """The default tracer, with every Conv2d and Linear (subclasses too) and the user's leaf
    module classes kept as one call."""

    def __init__(self, leaf_modules: tuple[type[nn.Module], ...]) -> None:
        super().__init__()
        self.leaves = (nn.Conv2d, nn.Linear, *leaf_modules)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, module_qualified_name)


# ----------------------------------------------------------------------------------- walker
class _Converter:
    def __init__(self, gm: fx.GraphModule, kernel_map: dict[int, tuple[int, ...]]) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.kernel_map = kernel_map
        self.groups = _Groups()
        self.values: dict[fx.Node, Any] = {}
        self.layers: list[_Layer] = []
        self.by_node: dict[fx.Node, _Layer] = {}
        self.inputs: list[int] = []
        self.output_shape: tuple[int, ...] | None = None
        self.kernel_notes: list[str] = []
        # skip name → (the residual add, its branch operand), filled by ``skips``.
        self.skip_adds: dict[str, tuple[fx.Node, fx.Node]] = {}

    # ------------------------------------------------------------------------------- helpers
    def _fresh(self, meta: Any, origin: str, reason: str, structural: bool) -> Any:
        """A value with a fixed group of its own for each tensor in ``meta``."""
        if isinstance(meta, TensorMetadata):
            if len(meta.shape) < 2:
                return _CONST
            g = self.groups.new(int(meta.shape[1]), origin)
            self.groups.fix(g, reason, structural)
            return _Channels((g,))
        if isinstance(meta, (tuple, list)):
            return tuple(
                self._fresh(m, f"{origin}.{i}", reason, structural) for i, m in enumerate(meta)
            )
        return None

    def _segments(self, value: Any) -> list[int]:
        if isinstance(value, _Channels):
            return list(value.segments)
        if isinstance(value, tuple):
            return [s for v in value for s in self._segments(v)]
        return []

    def _channels(self, value: _Channels) -> int:
        return value.factor * sum(self.groups.channels[s] for s in value.segments)

    def _opaque(self, node: fx.Node, why: str = "") -> None:
        """Fix every group ``node`` reads; its output gets fixed groups of its own."""
        what = _op_name(node, self.modules) + (f": {why}" if why else "")
        for inp in node.all_input_nodes:
            for s in self._segments(self.values.get(inp)):
                self.groups.fix(s, what)
        self.values[node] = self._fresh(_meta(node), node.name, what, structural=False)

    def _fix_read(self, node: fx.Node, value: Any, why: str) -> None:
        """Fix the groups of ``value``, which ``node`` mixes across its channels."""
        what = f"{_op_name(node, self.modules)}: {why}"
        for s in self._segments(value):
            self.groups.fix(s, what)

    def _set_followed(self, node: fx.Node, value: Any, why: str) -> None:
        """Record ``value`` for ``node`` if it matches the traced shape, else treat it as opaque."""
        shape = _shape(node)
        if isinstance(value, _Channels) and (
            shape is None or len(shape) < 2 or self._channels(value) != shape[1]
        ):
            self._opaque(node, why)
            return
        self.values[node] = value

    # -------------------------------------------------------------------------------- walk
    def run(self) -> None:
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self._placeholder(node)
            elif node.op == "get_attr":
                self.values[node] = _CONST
            elif node.op == "output":
                self._output(node)
            elif not _has_tensor(_meta(node)):
                self.values[node] = None  # sizes, shapes, Python numbers
            elif node.op == "call_module":
                self._module(node, self.modules[str(node.target)])
            else:
                self._function(node)

    def _placeholder(self, node: fx.Node) -> None:
        shape = _shape(node)
        if shape is None or len(shape) < 2:
            if not self.inputs:
                raise GraphError(
                    f"input {node.name}", f"must be a tensor [B, C, ...], got shape {shape}"
                )
            self.values[node] = None  # a further argument that is no batch of images
            return
        g = self.groups.new(shape[1], node.name)
        self.groups.fix(g, "network input", structural=True)
        self.inputs.append(g)
        self.values[node] = _Channels((g,))

    def _output(self, node: fx.Node) -> None:
        out = node.args[0]
        shape = _shape(out)
        if not isinstance(out, fx.Node) or shape is None or len(shape) != 2:
            raise GraphError(
                "output",
                f"the network must return one [B, num_classes] tensor, got {shape or type(out)}",
            )
        self.output_shape = shape
        for s in self._segments(self.values.get(out)):
            self.groups.fix(s, "network output", structural=True)

    # ------------------------------------------------------------------------------ modules
    def _module(self, node: fx.Node, mod: nn.Module) -> None:
        if isinstance(mod, nn.Conv2d):
            self._conv(node, mod)
        elif isinstance(mod, nn.Linear):
            self._linear(node, mod)
        elif isinstance(mod, nn.Flatten):
            self._flatten(node, mod.start_dim, mod.end_dim)
        elif isinstance(mod, (nn.Softmax, nn.LogSoftmax)) and _softmax_over_channels(
            mod.dim, _shape(node)
        ):
            x = node.args[0]
            self._fix_read(node, self.values.get(x), "it normalises over the channels")
            self._set_followed(node, self.values.get(x), "its output channels differ")
        elif isinstance(mod, _CHANNELWISE_MODULES):
            x = node.args[0]
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)) and x in self.by_node:
                layer = self.by_node[x]
                if len(x.users) == 1 and layer.norm is None:
                    layer.norm = str(node.target)
            self._set_followed(node, self.values.get(x), "its output channels differ")
        elif isinstance(mod, _NORM_MODULES):
            self._opaque(node, "its parameters are shaped by more than the channels")
        else:
            weights = [n for n, p in mod.named_parameters() if p.dim() >= 2]
            if weights:
                raise GraphError(
                    str(node.target),
                    f"{type(mod).__name__} has weight matrices ({', '.join(weights)}) whose "
                    "multiply-accumulates no cost would count; dnas.convert costs Conv2d and "
                    "Linear layers",
                )
            self._opaque(node)

    def _layer_input(self, node: fx.Node, name: str) -> _Channels:
        x = node.args[0]
        value = self.values.get(x)
        if isinstance(value, _Channels) and (value.factor == 1 or len(_shape(x) or ()) == 2):
            return value
        # A constant input, or a flattened one read by a conv: its channels are its own.
        reason = f"the input of {name} is not a plain activation"
        for s in self._segments(value):
            self.groups.fix(s, reason)
        return self._fresh(_meta(x), f"{x.name}", reason, structural=False)

    def _register(self, layer: _Layer) -> None:
        if any(other.name == layer.name for other in self.by_node.values()):
            raise GraphError(
                layer.name,
                "the module is called more than once (shared weights); convert a network that "
                "calls each Conv2d and Linear once",
            )
        self.layers.append(layer)
        self.by_node[layer.node] = layer
        self.values[layer.node] = _Channels((layer.out,))

    def _conv(self, node: fx.Node, mod: nn.Conv2d) -> None:
        name = str(node.target)
        in_shape, out_shape = _shape(node.args[0]), _shape(node)
        if in_shape is None or len(in_shape) != 4 or out_shape is None:
            raise GraphError(name, f"a Conv2d needs a [B, C, H, W] input, got shape {in_shape}")
        kh, kw = _pair(mod.kernel_size)
        sh, sw = _pair(mod.stride)
        if kh != kw or sh != sw:
            raise GraphError(
                name, f"kernel {(kh, kw)} and stride {(sh, sw)} must be square to be costed"
            )
        if _pair(mod.dilation) != (1, 1):
            raise GraphError(name, f"dilation {mod.dilation} is not modelled by the cost")
        depthwise = mod.groups > 1 and mod.groups == mod.in_channels == mod.out_channels
        if mod.groups > 1 and not depthwise:
            raise GraphError(
                name,
                f"groups={mod.groups} with {mod.in_channels}→{mod.out_channels} channels: only "
                "dense (groups=1) and depthwise (groups=in=out) convs are modelled",
            )
        x = self._layer_input(node, name)
        kernels: tuple[int, ...] = (kh,)
        if depthwise:
            if len(x.segments) == 1:
                out = x.segments[0]
            else:
                reason = f"depthwise conv {name} over a concatenation"
                for s in x.segments:
                    self.groups.fix(s, reason)
                out = self.groups.new(mod.out_channels, name)
                self.groups.fix(out, reason)
                x = _Channels((out,))
            kernels = self._kernel_choices(name, kh, mod.padding)
        else:
            out = self.groups.new(mod.out_channels, name)
        self._register(
            _Layer(
                node=node,
                name=name,
                kind="conv",
                in_segments=x.segments,
                out=out,
                kernels=kernels,
                stride=sh,
                depthwise=depthwise,
                output_h=out_shape[2],
                output_w=out_shape[3],
            )
        )

    def _kernel_choices(self, name: str, k: int, padding: Any) -> tuple[int, ...]:
        choices = self.kernel_map.get(k)
        if choices is None or choices == (k,):
            return (k,)
        if padding != "same" and _pair(padding) != (k // 2, k // 2):
            self.kernel_notes.append(
                f"dnas.convert: {name}: kernel choices {list(choices)} not applied: its padding "
                f"{padding} is not 'same' ({k // 2}), so another kernel would change its output "
                "size"
            )
            return (k,)
        return choices

    def _linear(self, node: fx.Node, mod: nn.Linear) -> None:
        name = str(node.target)
        in_shape = _shape(node.args[0])
        if in_shape is None or len(in_shape) != 2:
            raise GraphError(
                name, f"a Linear is modelled on a [B, features] input, got shape {in_shape}"
            )
        x = self._layer_input(node, name)
        out = self.groups.new(mod.out_features, name)
        self._register(
            _Layer(
                node=node,
                name=name,
                kind="linear",
                in_segments=x.segments,
                out=out,
                kernels=(1,),
                stride=1,
                depthwise=False,
                output_h=1,
                output_w=1,
                in_factor=x.factor,
            )
        )

    # ---------------------------------------------------------------------------- functions
    def _function(self, node: fx.Node) -> None:
        target = node.target
        if target in _UNCOUNTED:
            raise GraphError(
                node.name,
                f"{_op_name(node, self.modules)} has multiply-accumulates no cost would count; "
                "use nn.Conv2d / nn.Linear modules",
            )
        if not any(
            isinstance(self.values.get(n), (_Channels, tuple)) for n in node.all_input_nodes
        ):
            self.values[node] = _CONST  # made from parameters and constants only
            return
        method = node.op == "call_method"
        x = node.args[0] if node.args else None
        if target is operator.getitem:
            self._getitem(node)
        elif target in _CATS:
            self._cat(node)
        elif target in _FLATTENS:
            self._flatten(node, _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1))
        elif target in _RESHAPES:
            self._reshape(node)
        elif target in _REDUCTIONS:
            self._reduce(node)
        elif target in _LAYOUTS:
            self._layout(node)
        elif (target in _UNARY_METHODS) if method else (target in _UNARY_FUNCTIONS):
            if target in _SOFTMAXES and _softmax_over_channels(_arg(node, 1, "dim"), _shape(node)):
                self._fix_read(node, self.values.get(x), "it normalises over the channels")
            self._set_followed(node, self.values.get(x), "its output channels differ")
        elif (target in _ELEMENTWISE_METHODS) if method else (target in _ELEMENTWISE_FUNCTIONS):
            self._elementwise(node, node.all_input_nodes)
        else:
            self._opaque(node)

    def _elementwise(self, node: fx.Node, operands: Sequence[fx.Node]) -> None:
        shape = _shape(node)
        values = [(n, self.values.get(n)) for n in operands]
        acts = [(n, v) for n, v in values if isinstance(v, _Channels)]
        if not acts:
            if any(isinstance(v, (_Channels, tuple)) for _, v in values):
                self._opaque(node)
            else:
                self.values[node] = _CONST
            return
        if shape is None or len(shape) < 2:
            self._opaque(node)
            return
        if any(len(_shape(n) or ()) != len(shape) for n, _ in acts):
            # Broadcasting aligns dimensions from the right: a lower-rank activation's dim 1
            # is not the output's channel dimension.
            self._opaque(node, "it broadcasts activations of different ranks")
            return
        c = shape[1]
        full = [v for _, v in acts if self._channels(v) == c]
        if not full or any(self._channels(v) not in (c, 1) for _, v in acts):
            self._opaque(node, "its operands' channels differ")
            return
        for n, v in values:
            if v is _CONST and c > 1:
                s = _shape(n)
                aligned = s[len(s) - len(shape) + 1] if s and len(s) >= len(shape) - 1 else 1
                if aligned != 1:
                    self._opaque(node, f"it combines the channels with a constant of shape {s}")
                    return
        base = full[0]
        for other in full[1:]:
            pairs = list(zip(base.segments, other.segments))
            if (
                other.factor != base.factor
                or len(other.segments) != len(base.segments)
                or any(self.groups.channels[a] != self.groups.channels[b] for a, b in pairs)
            ):
                self._opaque(node, "its operands concatenate different groups")
                return
            for a, b in pairs:
                self.groups.union(a, b)
        self.values[node] = base

    def _cat(self, node: fx.Node) -> None:
        tensors = _arg(node, 0, "tensors")
        shape = _shape(node)
        if not isinstance(tensors, (list, tuple)) or shape is None:
            self._opaque(node)
            return
        dim = _arg(node, 1, "dim", 0)
        if not isinstance(dim, int):
            self._opaque(node)
            return
        if dim % len(shape) != 1:
            self._elementwise(node, [t for t in tensors if isinstance(t, fx.Node)])
            return
        segments: list[int] = []
        factors = set()
        for t in tensors:
            v = self.values.get(t)
            if v is _CONST:  # a constant's channels are its own, fixed by design
                v = self._fresh(_meta(t), t.name, "a constant tensor", structural=True)
            if not isinstance(v, _Channels):
                self._opaque(node)
                return
            segments.extend(v.segments)
            factors.add(v.factor)
        if len(factors) != 1:
            self._opaque(node, "it concatenates flattened tensors of different spatial sizes")
            return
        self._set_followed(node, _Channels(tuple(segments), factors.pop()), "")

    def _flatten(self, node: fx.Node, start: int, end: int) -> None:
        x = node.args[0]
        value, in_shape = self.values.get(x), _shape(x)
        if not isinstance(value, _Channels) or in_shape is None:
            self._opaque(node)
            return
        if not (isinstance(start, int) and isinstance(end, int)):
            self._opaque(node, "it flattens dimensions given by traced values")
            return
        n = len(in_shape)
        start, end = start % n, end % n
        if start >= end or start >= 2:
            self._set_followed(node, value, "")
        elif start == 1:
            factor = math.prod(in_shape[2 : end + 1])
            self._set_followed(node, _Channels(value.segments, value.factor * factor), "")
        else:
            self._opaque(node, "it flattens the batch dimension")

    def _reshape(self, node: fx.Node) -> None:
        x = node.args[0]
        value, in_shape, out_shape = self.values.get(x), _shape(x), _shape(node)
        spec = list(node.args[1:]) or [node.kwargs.get("shape")]
        if len(spec) == 1 and isinstance(spec[0], (tuple, list, torch.Size)):
            spec = list(spec[0])
        if not isinstance(value, _Channels) or in_shape is None or out_shape is None:
            self._opaque(node)
            return
        if len(spec) < 2 or len(out_shape) < 2 or len(in_shape) < 2:
            self._opaque(node, "it reshapes the channel dimension")
            return
        # The channel count must follow the tensor: -1 (inferred) or the tensor's own size(1),
        # never a literal (it would not follow a width choice) or other arithmetic.
        if len(out_shape) == 2 and out_shape[1] == math.prod(in_shape[1:]):
            if spec[1] != -1:
                self._opaque(node, f"it flattens to the size {_spec_text(spec[1])}, not -1")
                return
            factor = value.factor * math.prod(in_shape[2:])
            self._set_followed(node, _Channels(value.segments, factor), "")
        elif out_shape[:2] == in_shape[:2]:
            if spec[1] != -1 and not _is_channel_size(spec[1]):
                self._opaque(node, f"it reshapes to the channel count {_spec_text(spec[1])}")
                return
            self._set_followed(node, value, "")
        else:
            self._opaque(node, "it reshapes the channel dimension")

    def _layout(self, node: fx.Node) -> None:
        x = node.args[0]
        value, in_shape, out_shape = self.values.get(x), _shape(x), _shape(node)
        if not isinstance(value, _Channels) or in_shape is None or out_shape is None:
            self._opaque(node)
            return
        dims = [d for d in node.args[1:]] + list(node.kwargs.values())
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = list(dims[0])
        if not all(isinstance(d, int) for d in dims):
            self._opaque(node, "it moves dimensions given by traced values")
            return
        name = node.target if isinstance(node.target, str) else node.target.__name__
        n = len(out_shape) if name == "unsqueeze" else len(in_shape)
        if name == "permute":
            moved = [i for i, d in enumerate(dims) if d % n != i]
        else:  # squeeze() without dims is judged by the shapes below
            moved = [d % n for d in dims]
        if any(d < 2 for d in moved) or out_shape[:2] != in_shape[:2]:
            self._opaque(node, "it moves the batch or channel dimension")
            return
        self._set_followed(node, value, "")

    def _reduce(self, node: fx.Node) -> None:
        x = node.args[0]
        value, in_shape, out_shape = self.values.get(x), _shape(x), _shape(node)
        if not isinstance(value, _Channels) or in_shape is None or out_shape is None:
            self._opaque(node)
            return
        dim = _arg(node, 1, "dim")
        if not (dim is None or isinstance(dim, int) or all(isinstance(d, int) for d in dim)):
            self._opaque(node, "it reduces over dimensions given by traced values")
            return
        dims = _dims(dim, len(in_shape))
        if dims is None or 0 in dims:
            if dims is None:
                self.values[node] = _CONST
            else:
                self._opaque(node, "it reduces over the batch")
            return
        if 1 in dims:
            # Its result depends on every channel read (a narrower width would change it, and a
            # supernet computes the channels beyond a width): the groups read keep their width.
            self._fix_read(node, value, "it reduces over the channels")
            self.values[node] = self._fresh(
                _meta(node), node.name, "a reduction over channels", structural=True
            )
            return
        self._set_followed(node, value, "")

    def _getitem(self, node: fx.Node) -> None:
        x, index = node.args[0], node.args[1]
        value = self.values.get(x)
        if isinstance(value, tuple) and isinstance(index, int):
            self.values[node] = value[index]
            return
        if not isinstance(value, _Channels):
            self._opaque(node)
            return
        idx = index if isinstance(index, tuple) else (index,)
        whole = slice(None)
        dynamic = any(isinstance(i, (fx.Node, Tensor, list)) for i in idx)
        if not dynamic and idx[0] == whole and (len(idx) == 1 or idx[1] == whole):
            # x[:, :, ...]: batch and channels kept whole, only the spatial dims indexed.
            self._set_followed(node, value, "it indexes the channels")
        else:
            self._opaque(node, "it indexes the batch or the channels")

    # ------------------------------------------------------------------------------- skips
    def skips(self) -> list[SkipChoice]:
        """Residual adds ``identity + branch`` whose branch only reads ``identity``."""
        found: list[SkipChoice] = []
        for node in self.gm.graph.nodes:
            if node.target not in _ADDS or node.op not in ("call_function", "call_method"):
                continue
            operands = [a for a in node.args[:2] if isinstance(a, fx.Node)]
            if len(operands) != 2:
                continue
            for ident, branch in (operands, operands[::-1]):
                layers = self._branch_layers(node, self._through_identity(ident), branch)
                if layers:
                    found.append(SkipChoice(self._skip_name(node, layers, found), layers))
                    self.skip_adds[found[-1].name] = (node, branch)
                    break
        return found

    def _through_identity(self, node: fx.Node) -> fx.Node:
        """The value an ``nn.Identity`` shortcut passes on (ResNet's ``shortcut(x)`` is ``x``)."""
        while node.op == "call_module" and isinstance(
            self.gm.get_submodule(str(node.target)), nn.Identity
        ):
            node = node.args[0]
        return node

    def _branch_layers(self, add: fx.Node, ident: fx.Node, branch: fx.Node) -> tuple[str, ...]:
        if _shape(ident) != _shape(add):
            return ()
        before: set[fx.Node] = set()  # ident and everything it depends on
        stack = [ident]
        while stack:
            n = stack.pop()
            if n not in before:
                before.add(n)
                stack.extend(n.all_input_nodes)
        nodes: set[fx.Node] = set()
        stack = [branch]
        while stack:
            n = stack.pop()
            if n in nodes or n is ident or n.op == "get_attr":
                continue
            if n in before or n.op == "placeholder":
                return ()  # the branch reads more than the identity
            nodes.add(n)
            stack.extend(n.all_input_nodes)
        for n in nodes:
            if any(u not in nodes and u is not add for u in n.users):
                return ()  # a branch value is used outside the branch
        return tuple(layer.name for layer in self.layers if layer.node in nodes)

    @staticmethod
    def _skip_name(add: fx.Node, layers: tuple[str, ...], found: list[SkipChoice]) -> str:
        parts = [name.split(".") for name in layers]
        common: list[str] = []
        for level in zip(*parts):
            if len(set(level)) != 1:
                break
            common.append(level[0])
        if len(layers) == 1:
            common = common[:-1]
        name = ".".join(common) or add.name
        taken = {s.name for s in found}
        return name if name not in taken else f"{name}#{add.name}"


# ---------------------------------------------------------------------------------- convert
@dataclass(frozen=True)
class Traced:
    """A converted network: its layer graph and the traced module it was read from.

    Attributes:
        graph: the layer graph (what ``convert`` returns).
        module: the ``torch.fx.GraphModule`` traced from the model; it shares the model's
            submodules (copy it before changing them).
        node_groups: fx node name → ``(segments, factor)`` for every value whose dimension 1
            the converter followed: ``(group, channels)`` of its channels in order (group
            ``None`` for a group no layer reads or writes, which is fixed) and the features per
            channel (the flattened spatial size; 1 before a flatten).
        skip_adds: skip name → ``(residual add node, branch operand node)`` names.
    """

    graph: LayerGraph
    module: fx.GraphModule
    node_groups: Mapping[str, tuple[tuple[tuple[str | None, int], ...], int]]
    skip_adds: Mapping[str, tuple[str, str]]


def convert(
    model: nn.Module,
    example_input: Tensor | tuple[Tensor, ...],
    *,
    w_bits: Sequence[int] = (2, 4, 8),
    a_bits: Sequence[int] = (2, 4, 8),
    width_fractions: Sequence[float] = (0.5, 0.75, 1.0),
    kernels: Mapping[int, Sequence[int]] | None = None,
    skips: bool = False,
    leaf_modules: Sequence[type[nn.Module]] = (),
    layer_bits: Mapping[str, tuple[Sequence[int], Sequence[int]]] | None = None,
) -> LayerGraph:
    """The layer graph of ``model``: its Conv2d and Linear layers and their channel groups.

    The model is traced with ``torch.fx.symbolic_trace`` semantics and run once on
    ``example_input`` in eval mode without gradients (its training flags are restored; batch-norm
    statistics do not move). See the module docstring for what ties groups and what is refused.

    Args:
        model: the network; it must return one ``[B, num_classes]`` tensor.
        example_input: a batch ``[B, C, H, W]`` (or a tuple of the forward's tensor arguments).
        w_bits: weight bit-width choices of every layer.
        a_bits: input-activation bit-width choices of every layer.
        width_fractions: each searchable group's widths are ``round(f · channels)`` (half up, at
            least 1, deduplicated); must include 1.0. The groups of the network input and output
            and those the converter could not follow are fixed.
        kernels: kernel choices of *depthwise* convs by their own kernel size, e.g. ``{3: (3, 5)}``
            lets every depthwise 3×3 conv with 'same' padding choose 3 or 5. Dense convs always
            keep their kernel. ``None``: every layer keeps its own.
        skips: offer a ``SkipChoice`` for every residual add ``x + f(x)`` whose branch ``f``
            reads nothing but ``x`` and keeps its shape (removing the branch leaves ``x``).
        leaf_modules: module classes to keep as one opaque call instead of tracing into them
            (for a part torch.fx cannot trace); their widths are fixed, with a warning.
        layer_bits: per layer (qualified name) its own ``(w_bits, a_bits)`` choices in place
            of ``w_bits``/``a_bits``, e.g. ``{"stem.0": ((8,), (8,)), "fc": ((8,), (8,))}``
            keeps the first and last layers at 8 bits, as is common practice.

    Returns:
        The graph; layer names are the modules' qualified names, each group is named after the
        first layer writing it (``input`` for the network input).

    Raises:
        GraphError: the model cannot be traced, run or costed (the message says which layer).

    Warns:
        ConvertWarning: one line per layer whose width an op it could not follow fixes, and per
            depthwise conv whose kernel choices could not be applied.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4, 10))
        >>> g = convert(net, torch.zeros(1, 3, 4, 4))
        >>> g.group("0").widths, g.layer("3").in_factor, g.macs(g.largest_choice())
        ((4, 6, 8), 4, 1184)
    """
    return trace_network(
        model,
        example_input,
        w_bits=w_bits,
        a_bits=a_bits,
        width_fractions=width_fractions,
        kernels=kernels,
        skips=skips,
        leaf_modules=leaf_modules,
        layer_bits=layer_bits,
    ).graph


def trace_network(
    model: nn.Module,
    example_input: Tensor | tuple[Tensor, ...],
    *,
    w_bits: Sequence[int] = (2, 4, 8),
    a_bits: Sequence[int] = (2, 4, 8),
    width_fractions: Sequence[float] = (0.5, 0.75, 1.0),
    kernels: Mapping[int, Sequence[int]] | None = None,
    skips: bool = False,
    leaf_modules: Sequence[type[nn.Module]] = (),
    layer_bits: Mapping[str, tuple[Sequence[int], Sequence[int]]] | None = None,
) -> Traced:
    """``convert``'s result with what building a supernet on the traced module needs.

    Same arguments and errors as ``convert``; see ``Traced``.
    """
    fractions = _check_fractions(width_fractions)
    kernel_map = _check_kernel_map(kernels)
    w_bits, a_bits = check_increasing(w_bits, "w_bits"), check_increasing(a_bits, "a_bits")
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    label = type(model).__name__
    try:
        graph = _Tracer(tuple(leaf_modules)).trace(model)
    except Exception as e:  # torch.fx raises many types; all mean "not traceable"
        raise GraphError(
            "model",
            f"torch.fx cannot trace {label}: {e}; pass the untraceable module's class in "
            "leaf_modules= (its widths are then fixed)",
        ) from e
    gm = fx.GraphModule(model, graph)
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            ShapeProp(gm).propagate(*args)
    except Exception as e:
        cause: BaseException = e
        while cause.__cause__ is not None:  # ShapeProp wraps the model's own error
            cause = cause.__cause__
        raise GraphError("example_input", f"{label} failed on it: {cause}") from e
    finally:
        for m, training in modes.items():
            m.train(training)

    conv = _Converter(gm, kernel_map)
    conv.run()
    assert conv.output_shape is not None  # every fx graph has an output node
    skip_choices = conv.skips() if skips else []
    own_bits = _check_layer_bits(layer_bits, [layer.name for layer in conv.layers])
    graph, names = _build(conv, label, args[0], w_bits, a_bits, fractions, skip_choices, own_bits)
    node_groups = {
        node.name: (
            tuple(
                (names.get(conv.groups.find(s)), conv.groups.channels[conv.groups.find(s)])
                for s in v.segments
            ),
            v.factor,
        )
        for node, v in conv.values.items()
        if isinstance(v, _Channels)
    }
    return Traced(
        graph=graph,
        module=gm,
        node_groups=node_groups,
        skip_adds={k: (add.name, branch.name) for k, (add, branch) in conv.skip_adds.items()},
    )


def _build(
    conv: _Converter,
    label: str,
    example: Tensor,
    w_bits: tuple[int, ...],
    a_bits: tuple[int, ...],
    fractions: tuple[float, ...],
    skip_choices: list[SkipChoice],
    own_bits: dict[str, tuple[tuple[int, ...], tuple[int, ...]]],
) -> tuple[LayerGraph, dict[int, str]]:
    g = conv.groups
    if not conv.layers:
        raise GraphError("model", f"{label} has no Conv2d or Linear layer")
    if not conv.inputs:
        raise GraphError("example_input", f"{label} takes no tensor input")
    input_root = g.find(conv.inputs[0])
    used = [g.find(s) for layer in conv.layers for s in (*layer.in_segments, layer.out)]
    # A group is named after the first layer writing it, else after the value that opened it.
    writers: dict[int, str] = {}
    for layer in conv.layers:
        writers.setdefault(g.find(layer.out), layer.name)
    names: dict[int, str] = {}
    for root in dict.fromkeys([input_root, *used]):
        name = "input" if root == input_root else writers.get(root, g.origin[root])
        while name in names.values():
            name += "'"
        names[root] = name

    groups = []
    for root in dict.fromkeys([input_root, *used]):
        why = g.structural.get(root, []) + g.ops.get(root, [])
        c = g.channels[root]
        widths = (c,) if why else width_choices(c, fractions)
        groups.append(ChannelGroup(names[root], c, widths, "; ".join(why)))

    layers = []
    for layer in conv.layers:
        in_groups = tuple(names[g.find(s)] for s in layer.in_segments)
        layers.append(
            GraphLayer(
                name=layer.name,
                kind=layer.kind,
                in_groups=in_groups,
                out_group=names[g.find(layer.out)],
                kernels=layer.kernels,
                stride=layer.stride,
                depthwise=layer.depthwise,
                output_h=layer.output_h,
                output_w=layer.output_w,
                w_bits=own_bits.get(layer.name, (w_bits, a_bits))[0],
                a_bits=own_bits.get(layer.name, (w_bits, a_bits))[1],
                # The network's first layer, if it is a dense conv reading the input.
                im2col=layer is conv.layers[0]
                and layer.kind == "conv"
                and not layer.depthwise
                and in_groups == (names[input_root],),
                in_factor=layer.in_factor,
                norm=layer.norm,
            )
        )
    assert conv.output_shape is not None
    graph = LayerGraph(
        layers=tuple(layers),
        groups=tuple(groups),
        input_shape=tuple(example.shape[1:]),
        num_classes=conv.output_shape[1],
        skips=tuple(skip_choices),
        input_group=names[input_root],
        name=label,
    )
    for layer in conv.layers:
        root = g.find(layer.out)
        ops = g.ops.get(root, [])
        if ops and root not in g.structural:
            warnings.warn(
                f"dnas.convert: {layer.name}: width fixed at {g.channels[root]} channels: its "
                f"output reaches {'; '.join(ops)}, whose effect on channels the converter "
                "cannot follow",
                ConvertWarning,
                stacklevel=4,
            )
    for note in conv.kernel_notes:
        warnings.warn(note, ConvertWarning, stacklevel=4)
    return graph, names
