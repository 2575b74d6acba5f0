"""The supernet of a converted network: the user's own modules, every choice of its graph searchable.

``GraphSuperNet(traced, example_input)`` (or ``searchable(model, example_input, ...)``) takes the
traced module of ``dnas.graph.convert.trace_network`` and replaces each of its Conv2d and Linear
modules with a ``SearchLayer``: the same weight with a quantized input (PACT, signed where the
example input showed negative values) and a quantized weight (per output channel), fractional
bit-widths in the search (FracBits), a Gumbel-softmax kernel choice over centre crops for a
depthwise conv with several kernels, and a skip gate on every skippable residual branch:
``x + g_keep · branch(x)``, exactly ``x`` at a one-hot skip. Everything else (batch norms,
activations, pooling, the wiring) is the user's own code, traced.

Width is a channel mask on the *reading* side: every layer that reads a channel group multiplies
the weight columns of that group's channels by the group's mask (fractional in the search, a step
in the discrete modes) before quantizing, so the channels beyond a width reach nothing, whatever
ops lie between the layers. The writing layers compute every channel. At a one-hot choice the
supernet therefore computes exactly the sliced network ``child(choice)`` returns (same weights,
same quantization scales; a test holds it).

Modes as for the MobileNetV2 supernet (``dnas.ops.choice``): ``gumbel``, ``uniform``, ``fixed``
(a ``GraphChoice``), ``argmax``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from dnas.graph.convert import Traced, trace_network
from dnas.graph.graph import GraphChoice, GraphError, GraphLayer
from dnas.ops import (
    ARCH_PREFIX,
    ArchChoice,
    FractionalWidth,
    GumbelKernel,
    QuantLayer,
    check_mode,
    gumbel_softmax,
    mix_kernels,
)

Segments = tuple[tuple[str | None, int], ...]


def is_arch_parameter(name: str) -> bool:
    """Whether a parameter name (as in ``named_parameters()``) is an architecture parameter."""
    return name.rsplit(".", 1)[-1].startswith(ARCH_PREFIX)


class _Masks:
    """The channel masks of the current forward, by group (``None``: every channel); shared by
    the supernet, which sets them, and its layers, which read them (not a module)."""

    def __init__(self) -> None:
        self.by_group: dict[str, Tensor | None] = {}


@dataclass
class GraphRelaxed:
    """The supernet's current distribution, differentiable in its architecture parameters.

    Attributes:
        width_index: searchable group → θ, its continuous index into the group's widths (0-dim).
        bit_index: layer → ``(β_w, β_a)``, continuous indices into its ``w_bits``/``a_bits``.
        kernel_probs: layer with several kernels → ``softmax(α)`` over them.
        keep_probs: skip → the probability of keeping the branch (0-dim).
    """

    width_index: dict[str, Tensor]
    bit_index: dict[str, tuple[Tensor, Tensor]]
    kernel_probs: dict[str, Tensor]
    keep_probs: dict[str, Tensor]


class SkipGate(ArchChoice):
    """Keep or skip a residual branch: logits ``arch_logits`` over ``(keep, skip)``.

    The residual add reads ``gate(branch)``: in gumbel mode ``g_keep · branch`` with a
    Gumbel-softmax sample ``g`` (straight-through one-hot when ``hard``), so a drawn skip leaves
    exactly the identity and ``α`` gets the gradient through the branch's output; in the discrete
    modes the branch, or zeros.
    """

    def __init__(self, tau: float = 5.0, hard: bool = True) -> None:
        super().__init__(2)
        self.tau, self.hard = tau, hard
        self.arch_logits = nn.Parameter(torch.zeros(2))

    def probs(self) -> Tensor:
        """``softmax(α)`` ``[2]``: (keep, skip)."""
        return self.arch_logits.softmax(-1)

    def argmax(self) -> int:
        return int(self.arch_logits.detach().argmax())

    def forward(self, branch: Tensor) -> Tensor:
        if self.mode == "gumbel":
            return branch * gumbel_softmax(self.arch_logits, self.tau, self.hard)[0]
        return branch if self.index() == 0 else torch.zeros_like(branch)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, hard={self.hard}, mode={self.mode!r}"


class SearchLayer(QuantLayer):
    """A Conv2d or Linear of a converted network with searchable bits, kernel and input width.

    Args:
        layer: the layer in the graph.
        weight: its weight at the largest shape (``[out, in/groups, k, k]`` or ``[out, in]``);
            for a depthwise conv with kernel choices, at the largest kernel.
        bias: its bias, or ``None``.
        padding: the conv's padding (a layer with kernel choices pads ``k // 2``).
        segments: ``(group, channels)`` of the input's channels in order, for the width masks
            (group ``None``: never masked).
        signed_input: signed input quantizer (the example input showed negative values here).
        clip: initial PACT clip.
        masks: the supernet's masks of the current forward.
        tau, hard: the kernel choice's Gumbel-softmax temperature and straight-through flag.
    """

    def __init__(
        self,
        layer: GraphLayer,
        weight: Tensor,
        bias: Tensor | None,
        padding: Any,
        segments: Segments,
        signed_input: bool,
        clip: float,
        masks: _Masks,
        tau: float = 5.0,
        hard: bool = True,
    ) -> None:
        super().__init__(layer.w_bits, layer.a_bits, signed_input, clip)
        self.name, self.kind = layer.name, layer.kind
        self.depthwise, self.stride, self.padding = layer.depthwise, layer.stride, padding
        self.in_factor = layer.in_factor
        self.segments = segments
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.kernels = layer.kernels
        self.kernel = GumbelKernel(layer.kernels, tau, hard) if len(layer.kernels) > 1 else None
        self._masks = masks

    def in_mask(self) -> Tensor | None:
        """The mask of the input's channels (features) in this forward; ``None``: all kept."""
        if self.depthwise:  # channel c reads channel c only: its readers mask it
            return None
        parts = [
            (self._masks.by_group.get(g) if g is not None else None, c) for g, c in self.segments
        ]
        if all(m is None for m, _ in parts):
            return None
        ones = self.weight.new_ones
        mask = torch.cat([m if m is not None else ones(c) for m, c in parts])
        return mask.repeat_interleave(self.in_factor) if self.in_factor > 1 else mask

    def _kernel_weight(self) -> tuple[Tensor, int]:
        """The (mixed or cropped) weight of this forward and its kernel size."""
        w, kmax = self.weight, self.kernels[-1]
        if self.kernel is None:
            return w, kmax
        if self.kernel.mode == "gumbel":
            g, _ = self.kernel.relaxed_sample()
            return mix_kernels(w, g, self.kernel.masks), kmax
        k = int(self.kernel.choice())
        o = (kmax - k) // 2
        return (w[:, :, o : o + k, o : o + k] if o else w), k

    def forward(self, x: Tensor) -> Tensor:
        w, k = self._kernel_weight()
        mask = self.in_mask()
        if mask is not None:
            w = w * mask.view(1, -1, *([1] * (w.dim() - 2)))
        xq, wq = self.aq(x), self.wq(w)
        if self.kind == "linear":
            return F.linear(xq, wq, self.bias)
        padding = k // 2 if self.kernel is not None else self.padding
        groups = w.shape[0] if self.depthwise else 1
        return F.conv2d(xq, wq, self.bias, self.stride, padding, 1, groups)

    def extra_repr(self) -> str:
        return f"{self.name!r}, {self.kind}, weight={list(self.weight.shape)}"


def searchable(
    model: nn.Module,
    example_input: Tensor,
    *,
    tau: float = 5.0,
    hard: bool = True,
    clip: float = 6.0,
    **convert_kwargs: Any,
) -> GraphSuperNet:
    """The supernet of ``model``: ``convert``'s arguments, then the supernet's.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
        >>> sn = searchable(net, torch.randn(2, 3, 8, 8))
        >>> sn.graph.group("0").widths, sn(torch.randn(2, 3, 8, 8)).shape
        ((4, 6, 8), torch.Size([2, 10]))
    """
    traced = trace_network(model, example_input, **convert_kwargs)
    return GraphSuperNet(traced, example_input, tau=tau, hard=hard, clip=clip)


def _signed_inputs(gm: fx.GraphModule, names: Sequence[str], example: Tensor) -> dict[str, bool]:
    """Whether each named layer's input has a negative value on ``example`` (eval mode)."""
    seen: dict[str, bool] = {}
    handles = []
    for name in names:

        def hook(mod: nn.Module, inputs: tuple[Tensor, ...], name: str = name) -> None:
            seen[name] = bool((inputs[0] < 0).any())

        handles.append(gm.get_submodule(name).register_forward_pre_hook(hook))
    modes = {m: m.training for m in gm.modules()}
    try:
        gm.eval()
        with torch.no_grad():
            gm(example)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.train(training)
    return seen


def _depthwise_weight(module: nn.Conv2d, kernels: tuple[int, ...]) -> Tensor:
    """The module's depthwise weight at the largest kernel choice, its own kernel in the centre
    and a fan-out initialisation around it."""
    w = module.weight.detach()
    k, kmax = w.shape[-1], kernels[-1]
    if k == kmax:
        return w
    big = torch.empty(w.shape[0], 1, kmax, kmax, dtype=w.dtype, device=w.device)
    nn.init.normal_(big, 0.0, (2.0 / kmax**2) ** 0.5)
    o = (kmax - k) // 2
    big[:, :, o : o + k, o : o + k] = w
    return big


class GraphSuperNet(nn.Module):
    """Every choice of a converted network's layer graph in one weight-sharing network.

    Architecture parameters (named ``arch_*``): per searchable channel group a width index θ
    (``FractionalWidth``), per layer bit indices β_w, β_a, per depthwise conv with several
    kernels the logits α, per skippable branch the (keep, skip) logits. θ and β start at the
    largest option, α uniform.

    Args:
        traced: ``trace_network``'s result (its module is copied; the user's model is untouched).
        example_input: a batch the model runs on (decides each quantizer's sign).
        tau: initial Gumbel-softmax temperature.
        hard: straight-through one-hot Gumbel samples.
        clip: initial PACT clips.

    Attributes:
        graph: the layer graph.
        net: the traced network with ``SearchLayer`` s and skip gates in place.
        mode: the sampling mode.
    """

    def __init__(
        self,
        traced: Traced,
        example_input: Tensor,
        tau: float = 5.0,
        hard: bool = True,
        clip: float = 6.0,
    ) -> None:
        super().__init__()
        graph = traced.graph
        self.graph = graph
        self._node_groups = dict(traced.node_groups)
        self._tau, self._hard = float(tau), bool(hard)
        self.mode = "gumbel"
        self._masks = _Masks()
        net = copy.deepcopy(traced.module)
        names = [layer.name for layer in graph.layers]
        signed = _signed_inputs(net, names, example_input)
        nodes = {n.name: n for n in net.graph.nodes}
        layer_nodes = {str(n.target): n for n in net.graph.nodes if n.op == "call_module"}
        self._layers: dict[str, SearchLayer] = {}
        for layer in graph.layers:
            module = net.get_submodule(layer.name)
            if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
                raise GraphError(
                    layer.name,
                    f"padding_mode={module.padding_mode!r}: the supernet pads with zeros only",
                )
            segments, _ = self._node_groups[layer_nodes[layer.name].args[0].name]
            weight = _depthwise_weight(module, layer.kernels) if layer.depthwise else module.weight
            op = SearchLayer(
                layer,
                weight,
                module.bias,
                getattr(module, "padding", 0),
                segments,
                signed[layer.name],
                clip,
                self._masks,
                tau,
                hard,
            )
            net.set_submodule(layer.name, op)
            self._layers[layer.name] = op
        # A gate between each skippable branch and its residual add.
        self._gates: dict[str, SkipGate] = {}
        self._gate_nodes: dict[str, str] = {}
        for i, skip in enumerate(graph.skips):
            add_name, branch_name = traced.skip_adds[skip.name]
            add, branch = nodes[add_name], nodes[branch_name]
            gate = SkipGate(tau, hard)
            target = f"dnas_skip_{i}"
            net.add_submodule(target, gate)
            with net.graph.inserting_after(branch):
                node = net.graph.call_module(target, (branch,))
            add.replace_input_with(branch, node)
            self._gates[skip.name] = gate
            self._gate_nodes[skip.name] = node.name
        net.recompile()
        self.net = net
        searchable_groups = [g for g in graph.groups if not g.is_fixed]
        self.widths = nn.ModuleList(FractionalWidth(g.widths) for g in searchable_groups)
        self._width_of = {g.name: op for g, op in zip(searchable_groups, self.widths)}

    # ----------------------------------------------------------------------------- access
    def search_layers(self) -> Iterator[SearchLayer]:
        """The searchable layers, in the graph's order."""
        yield from self._layers.values()

    def width_choice(self, group: str) -> FractionalWidth:
        """The width choice of a searchable group."""
        return self._width_of[group]

    def skip_gate(self, skip: str) -> SkipGate:
        """The gate of a skippable branch."""
        return self._gates[skip]

    def _choices(self) -> Iterator[ArchChoice]:
        for m in self.modules():
            if isinstance(m, ArchChoice):
                yield m

    # ------------------------------------------------------------------------- temperature
    @property
    def tau(self) -> float:
        return self._tau

    @tau.setter
    def tau(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f"tau must be positive, got {value}")
        self._tau = float(value)
        for m in self.modules():
            if isinstance(m, (GumbelKernel, SkipGate)):
                m.tau = self._tau

    @property
    def hard(self) -> bool:
        return self._hard

    @hard.setter
    def hard(self, value: bool) -> None:
        self._hard = bool(value)
        for m in self.modules():
            if isinstance(m, (GumbelKernel, SkipGate)):
                m.hard = self._hard

    # -------------------------------------------------------------------------- parameters
    def arch_parameters(self) -> list[nn.Parameter]:
        """θ, β, α and the skip logits."""
        return [p for n, p in self.named_parameters() if is_arch_parameter(n)]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every other parameter: weights, biases, batch-norm affine, PACT clips."""
        return [p for n, p in self.named_parameters() if not is_arch_parameter(n)]

    @torch.no_grad()
    def clamp_arch_(self) -> None:
        """Clamp every θ and β to ``[0, n − 1]``."""
        for m in self._choices():
            m.clamp_()

    # ------------------------------------------------------------------------------- modes
    def set_mode(self, mode: str, choice: GraphChoice | None = None) -> None:
        """Set the sampling mode of every choice (``choice`` for mode ``"fixed"``)."""
        check_mode(mode)
        if mode == "fixed":
            if choice is None:
                raise ValueError("mode 'fixed' needs a GraphChoice")
            self.graph.validate_choice(choice)
        else:
            for m in self._choices():
                m.set_mode(mode)
            self.mode = mode
            return
        assert choice is not None
        for name, op in self._width_of.items():
            op.set_mode(mode, self.graph.group(name).widths.index(choice.widths[name]))
        for layer in self.graph.layers:
            op = self._layers[layer.name]
            w, a = choice.bits.get(layer.name, (layer.w_bits[-1], layer.a_bits[-1]))
            op.wq.bits.set_mode(mode, layer.w_bits.index(w))
            op.aq.bits.set_mode(mode, layer.a_bits.index(a))
            if op.kernel is not None:
                k = choice.kernels.get(layer.name, layer.kernels[-1])
                op.kernel.set_mode(mode, layer.kernels.index(k))
        for name, gate in self._gates.items():
            gate.set_mode(mode, 1 if name in choice.skipped else 0)
        self.mode = mode

    # ----------------------------------------------------------------------------- forward
    def _mask(self, op: FractionalWidth) -> Tensor | None:
        if op.relaxed:
            return op.mask()
        width = op.width()
        if width == op.max_width:
            return None
        return (torch.arange(op.max_width, device=op.band.device) < width).float()

    def forward(self, x: Tensor) -> Tensor:
        self._masks.by_group = {name: self._mask(op) for name, op in self._width_of.items()}
        try:
            return self.net(x)
        finally:
            self._masks.by_group = {}

    # ------------------------------------------------------------------------ architectures
    def _choice(self, pick: Callable[[ArchChoice], int]) -> GraphChoice:
        widths = {g: op.widths[pick(op)] for g, op in self._width_of.items()}
        kernels, bits = {}, {}
        for layer in self.graph.layers:
            op = self._layers[layer.name]
            kernels[layer.name] = layer.kernels[pick(op.kernel)] if op.kernel else layer.kernels[0]
            bits[layer.name] = (layer.w_bits[pick(op.wq.bits)], layer.a_bits[pick(op.aq.bits)])
        skipped = [name for name, gate in self._gates.items() if pick(gate) == 1]
        return self.graph.choice(widths=widths, kernels=kernels, bits=bits, skipped=skipped)

    def derive(self) -> GraphChoice:
        """The most likely choice: nearest width and bits, argmax kernel and skip."""
        return self._choice(lambda op: op.argmax())

    def last_choice(self) -> GraphChoice:
        """The discrete choice the last forward ran (modes uniform, fixed, argmax); choices it did
        not draw (in a skipped branch) are their argmax."""
        return self._choice(lambda op: op.argmax() if op.last_index is None else op.last_index)

    def relaxed(self) -> GraphRelaxed:
        """The current distribution, for the expected costs (``dnas.graph.expected``)."""
        return GraphRelaxed(
            width_index={g: op.value() for g, op in self._width_of.items()},
            bit_index={
                name: (op.wq.bits.value(), op.aq.bits.value()) for name, op in self._layers.items()
            },
            kernel_probs={
                name: op.kernel.probs() for name, op in self._layers.items() if op.kernel
            },
            keep_probs={name: gate.probs()[0] for name, gate in self._gates.items()},
        )

    def entropy(self) -> Tensor:
        """Mean entropy (nats, 0-dim) of the kernel and skip distributions (0 without any)."""
        ents = []
        for m in self._choices():
            if isinstance(m, GumbelKernel) and m.searchable:
                ents.append(m.entropy())
            elif isinstance(m, SkipGate):
                logp = m.arch_logits.log_softmax(-1)
                ents.append(-(logp.exp() * logp).sum())
        if not ents:
            return torch.zeros(())
        return torch.stack(ents).mean()

    # -------------------------------------------------------------------------------- child
    def child(self, choice: GraphChoice) -> fx.GraphModule:
        """The network of ``choice`` alone: sliced weights and batch norms, fixed bits, skipped
        branches removed. It computes what the supernet computes in mode ``fixed`` at
        ``choice`` (a test holds it), from a copy of the current weights."""
        graph = self.graph
        graph.validate_choice(choice)
        net = copy.deepcopy(self.net)
        nodes = {n.name: n for n in net.graph.nodes}
        for name in self._gates:
            gate = nodes[self._gate_nodes[name]]
            branch = gate.args[0]
            if name in choice.skipped:
                (add,) = gate.users
                (ident,) = (a for a in add.all_input_nodes if a is not gate)
                # A fresh tensor, as the add made: an in-place op after it (a ReLU(inplace=True))
                # must not change the identity's value, which others may read.
                with net.graph.inserting_before(add):
                    fresh = net.graph.call_method("clone", (ident,))
                add.replace_all_uses_with(fresh)
                net.graph.erase_node(add)
            else:
                gate.replace_all_uses_with(branch)
            if not gate.users:
                net.graph.erase_node(gate)
        net.graph.eliminate_dead_code()
        net.recompile()
        net.delete_all_unused_submodules()
        live = {str(n.target) for n in net.graph.nodes if n.op == "call_module"}

        def keep(segments: Segments, factor: int) -> Tensor:
            """Indices of the input features a choice keeps."""
            idx, offset = [], 0
            for g, c in segments:
                w = c if g is None else choice.widths[g]
                idx.append(torch.arange(offset, offset + w))
                offset += c
            channels = torch.cat(idx)
            if factor == 1:
                return channels
            return (channels.view(-1, 1) * factor + torch.arange(factor)).flatten()

        removed = graph.skipped_layers(choice)
        for layer in graph.layers:
            if layer.name in removed or layer.name not in live:
                continue
            op = self._layers[layer.name]
            out = torch.arange(choice.widths[layer.out_group])
            k = choice.kernels[layer.name]
            w = op.weight.detach()
            if layer.depthwise:
                o = (layer.kernels[-1] - k) // 2
                w = w[out][:, :, o : o + k, o : o + k] if o else w[out]
                segments: Segments = ((None, len(out)),)
            else:
                w = w[out][:, keep(op.segments, op.in_factor)]
                segments = tuple(
                    (None, c if g is None else choice.widths[g]) for g, c in op.segments
                )
            w_bits, a_bits = choice.bits[layer.name]
            static = GraphLayer(
                name=layer.name,
                kind=layer.kind,
                in_groups=layer.in_groups,
                out_group=layer.out_group,
                kernels=(k,),
                stride=layer.stride,
                depthwise=layer.depthwise,
                output_h=layer.output_h,
                output_w=layer.output_w,
                w_bits=(w_bits,),
                a_bits=(a_bits,),
                in_factor=layer.in_factor,
            )
            new = SearchLayer(
                static,
                w,
                None if op.bias is None else op.bias.detach()[out],
                k // 2 if op.kernel is not None else op.padding,
                segments,
                op.aq.signed,
                float(op.aq.clip.detach()),
                _Masks(),
            )
            net.set_submodule(layer.name, new)
        for node in net.graph.nodes:
            if node.op != "call_module" or not node.args:
                continue
            module = net.get_submodule(str(node.target))
            arg = node.args[0]
            if isinstance(module, (SearchLayer, SkipGate)) or not isinstance(arg, fx.Node):
                continue
            if not isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
                True for _ in module.parameters()
            ):
                continue
            segments, factor = self._node_groups.get(arg.name, ((), 1))
            if all(g is None or choice.widths[g] == c for g, c in segments):
                continue
            net.set_submodule(str(node.target), _slice_channelwise(module, keep(segments, factor)))
        net.recompile()
        return net


def _slice_channelwise(module: nn.Module, idx: Tensor) -> nn.Module:
    """A copy of a per-channel module (batch norm, PReLU) keeping the channels ``idx``."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        new = copy.deepcopy(module)
        new.num_features = len(idx)
        for name in ("weight", "bias"):
            p = getattr(module, name)
            if p is not None:
                setattr(new, name, nn.Parameter(p.detach()[idx].clone()))
        for name in ("running_mean", "running_var"):
            b = getattr(module, name)
            if b is not None:
                setattr(new, name, b[idx].clone())
        return new
    if isinstance(module, nn.PReLU) and module.num_parameters > 1:
        new = copy.deepcopy(module)
        new.num_parameters = len(idx)
        new.weight = nn.Parameter(module.weight.detach()[idx].clone())
        return new
    if isinstance(module, nn.PReLU):
        return module
    raise GraphError(
        type(module).__name__,
        "has per-channel parameters the child network cannot slice (batch norm and PReLU can)",
    )


__all__ = [
    "GraphRelaxed",
    "GraphSuperNet",
    "SearchLayer",
    "SkipGate",
    "is_arch_parameter",
    "searchable",
]
