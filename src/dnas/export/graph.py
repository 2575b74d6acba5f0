"""A converted network's trained child as integers, with its wiring as data (no code).

The child of a graph search is a traced ``torch.fx`` module: ``SearchLayer`` s (one conv or linear
layer each, fixed bits) between the user's own ops. Its export is an ``IntegerModel`` whose
``graph`` lists the traced nodes in order, each ``{"op", "name", "args"}`` with arguments that are
numbers, lists or references to earlier nodes (``{"node": name}``):

- ``layer``: a ``SearchLayer``, stored as in ``dnas.export.integer`` (``L.weight_int``,
  ``L.weight_scale``, ``L.act_clip``, ``L.bn_scale``, ``L.bn_shift`` under its qualified name
  ``L``), with ``kind`` (conv or linear), ``stride``, ``padding``, ``groups``, bits and signedness;
  a batch norm that is the layer's only reader is folded into its ``bn_scale``/``bn_shift``;
- ``affine``: any other batch norm, as a per-channel scale and shift (``N.scale``, ``N.shift``);
- ``call``: one function from a fixed list (``FUNCTIONS``: ReLU, pooling, add, cat, flatten,
  view, mean, ...), by name, with its arguments; modules such as ``nn.ReLU`` or
  ``nn.AdaptiveAvgPool2d`` are written as the function they compute;
- ``input`` and ``output``.

``reference_forward_graph`` runs it from the integers alone; nothing in the file is executed as
code, and a network with an op outside the list is refused at export, naming the op.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from dnas.errors import DnasError
from dnas.export.integer import (
    GRAPH_FORMAT,
    IntegerModel,
    _fold_bn,
    _weight_int,
    quantize_input,
)
from dnas.quant.functions import MIN_CLIP


def _view(x: Tensor, *shape: Any) -> Tensor:
    return x.reshape(*shape)


def _size(x: Tensor, dim: int | None = None) -> Any:
    return tuple(x.shape) if dim is None else int(x.shape[dim])


FUNCTIONS: dict[str, Any] = {
    "relu": F.relu,
    "relu6": F.relu6,
    "hardtanh": F.hardtanh,
    "leaky_relu": F.leaky_relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "silu": F.silu,
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
    "gelu": F.gelu,
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "getitem": operator.getitem,
    "cat": torch.cat,
    "flatten": torch.flatten,
    "view": _view,
    "size": _size,
    "mean": torch.mean,
    "max_pool2d": F.max_pool2d,
    "avg_pool2d": F.avg_pool2d,
    "adaptive_avg_pool2d": F.adaptive_avg_pool2d,
    "adaptive_max_pool2d": F.adaptive_max_pool2d,
    "pad": F.pad,
    "interpolate": F.interpolate,
    "identity": lambda x: x,
}
"""What a ``call`` op may name: everything ``reference_forward_graph`` will run."""

# fx call targets (functions and method names) → the name in FUNCTIONS
_TARGETS: dict[Any, str] = {
    F.relu: "relu",
    torch.relu: "relu",
    "relu": "relu",
    "relu_": "relu",
    F.relu6: "relu6",
    F.hardtanh: "hardtanh",
    F.leaky_relu: "leaky_relu",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    "sigmoid": "sigmoid",
    torch.tanh: "tanh",
    "tanh": "tanh",
    F.silu: "silu",
    F.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid",
    F.gelu: "gelu",
    operator.add: "add",
    operator.iadd: "add",
    torch.add: "add",
    "add": "add",
    "add_": "add",
    operator.sub: "sub",
    torch.sub: "sub",
    "sub": "sub",
    operator.mul: "mul",
    operator.imul: "mul",
    torch.mul: "mul",
    "mul": "mul",
    "mul_": "mul",
    operator.truediv: "truediv",
    operator.getitem: "getitem",
    torch.cat: "cat",
    torch.flatten: "flatten",
    "flatten": "flatten",
    "view": "view",
    "reshape": "view",
    torch.reshape: "view",
    "size": "size",
    torch.mean: "mean",
    "mean": "mean",
    F.max_pool2d: "max_pool2d",
    F.avg_pool2d: "avg_pool2d",
    F.adaptive_avg_pool2d: "adaptive_avg_pool2d",
    F.adaptive_max_pool2d: "adaptive_max_pool2d",
    F.pad: "pad",
    F.interpolate: "interpolate",
    "clone": "identity",
    "contiguous": "identity",
}


def _module_call(mod: nn.Module) -> tuple[str, dict[str, Any]] | None:
    """A module as ``(function name, keyword arguments)``, or None if it is not one we know."""
    if isinstance(mod, (nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout)):
        return "identity", {}
    if isinstance(mod, nn.ReLU):
        return "relu", {}
    if isinstance(mod, nn.ReLU6):
        return "relu6", {}
    if isinstance(mod, nn.Hardtanh):
        return "hardtanh", {"min_val": mod.min_val, "max_val": mod.max_val}
    if isinstance(mod, nn.LeakyReLU):
        return "leaky_relu", {"negative_slope": mod.negative_slope}
    for cls, name in (
        (nn.Sigmoid, "sigmoid"),
        (nn.Tanh, "tanh"),
        (nn.SiLU, "silu"),
        (nn.Hardswish, "hardswish"),
        (nn.Hardsigmoid, "hardsigmoid"),
        (nn.GELU, "gelu"),
    ):
        if isinstance(mod, cls):
            return name, {}
    if isinstance(mod, nn.MaxPool2d):
        return "max_pool2d", {
            "kernel_size": mod.kernel_size,
            "stride": mod.stride,
            "padding": mod.padding,
            "ceil_mode": mod.ceil_mode,
        }
    if isinstance(mod, nn.AvgPool2d):
        return "avg_pool2d", {
            "kernel_size": mod.kernel_size,
            "stride": mod.stride,
            "padding": mod.padding,
            "ceil_mode": mod.ceil_mode,
            "count_include_pad": mod.count_include_pad,
        }
    if isinstance(mod, nn.AdaptiveAvgPool2d):
        return "adaptive_avg_pool2d", {"output_size": mod.output_size}
    if isinstance(mod, nn.AdaptiveMaxPool2d):
        return "adaptive_max_pool2d", {"output_size": mod.output_size}
    if isinstance(mod, nn.Flatten):
        return "flatten", {"start_dim": mod.start_dim, "end_dim": mod.end_dim}
    return None


def _encode(value: Any, where: str, alias: dict[str, str]) -> Any:
    """An fx argument as JSON data: nodes as ``{"node": name}`` (a folded batch norm's node as
    the layer it was folded into)."""
    if isinstance(value, fx.Node):
        return {"node": alias.get(value.name, value.name)}
    if isinstance(value, (list, tuple)):
        return [_encode(v, where, alias) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Size):
        return list(value)
    raise DnasError(f"{where}: an argument of type {type(value).__name__} cannot be exported")


def _decode(value: Any, env: dict[str, Any]) -> Any:
    if isinstance(value, dict) and set(value) == {"node"}:
        return env[value["node"]]
    if isinstance(value, list):
        return [_decode(v, env) for v in value]
    return value


@torch.no_grad()
def export_graph_integer(child: fx.GraphModule, meta: dict[str, str] | None = None) -> IntegerModel:
    """The integer form of a converted network's child (``GraphSuperNet.child``), eval mode.

    Raises:
        DnasError: a node the format does not hold (an op outside ``FUNCTIONS``, a module it
            does not know), naming it.
    """
    from dnas.graph.supernet import SearchLayer

    if not isinstance(child, fx.GraphModule):
        raise DnasError(f"export_graph_integer takes a traced child, got {type(child).__name__}")
    tensors: dict[str, Tensor] = {}
    ops: list[dict[str, Any]] = []
    layer_of: dict[str, dict[str, Any]] = {}  # node name → its layer op (for BN folding)
    alias: dict[str, str] = {}  # a folded BN's node → the layer node it folded into
    for node in child.graph.nodes:
        where = f"node {node.name} ({node.op} {node.target})"
        args = [_encode(a, where, alias) for a in node.args]
        kwargs = {k: _encode(v, where, alias) for k, v in node.kwargs.items()}
        if node.op == "placeholder":
            ops.append({"op": "input", "name": node.name})
        elif node.op == "output":
            ops.append({"op": "output", "name": node.name, "args": args})
        elif node.op == "call_module":
            mod = child.get_submodule(str(node.target))
            if isinstance(mod, SearchLayer):
                op = _layer_op(tensors, str(node.target), mod)
                op.update(name=node.name, args=args)
                ops.append(op)
                layer_of[node.name] = op
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
                src = node.args[0]
                if isinstance(src, fx.Node) and src.name in layer_of and len(src.users) == 1:
                    _fold(tensors, layer_of[src.name]["tensor"], mod)
                    alias[node.name] = src.name
                    continue
                scale, shift = _fold_bn(mod)
                tensors[f"{node.target}.scale"], tensors[f"{node.target}.shift"] = scale, shift
                ops.append(
                    {"op": "affine", "name": node.name, "tensor": str(node.target), "args": args}
                )
            else:
                call = _module_call(mod)
                if call is None:
                    raise DnasError(
                        f"{where}: a {type(mod).__name__} is not in the integer export's op list"
                    )
                fn, extra = call
                ops.append(
                    {"op": "call", "name": node.name, "fn": fn, "args": args, "kwargs": {**extra}}
                )
        elif node.op in ("call_function", "call_method"):
            fn = _TARGETS.get(node.target)
            if fn is None:
                name = getattr(node.target, "__name__", node.target)
                raise DnasError(f"{where}: {name} is not in the integer export's op list")
            ops.append({"op": "call", "name": node.name, "fn": fn, "args": args, "kwargs": kwargs})
        else:  # get_attr: a parameter or buffer read by the forward
            raise DnasError(f"{where}: tensors read outside a layer cannot be exported")
    meta = {"format": GRAPH_FORMAT, **(meta or {})}
    return IntegerModel({k: v.contiguous() for k, v in tensors.items()}, ops, meta)


def _layer_op(tensors: dict[str, Tensor], name: str, layer) -> dict[str, Any]:
    w_bits, a_bits = layer.wq.bits.bits, layer.aq.bits.bits
    if len(w_bits) != 1 or len(a_bits) != 1 or layer.kernel is not None:
        raise DnasError(f"layer {name} still has choices: export a child, not a supernet")
    q, s = _weight_int(layer.weight.detach().float(), w_bits[0])
    tensors[f"{name}.weight_int"] = q
    tensors[f"{name}.weight_scale"] = s
    tensors[f"{name}.act_clip"] = torch.tensor(max(float(layer.aq.clip), MIN_CLIP))
    out = layer.weight.shape[0]
    tensors[f"{name}.bn_scale"] = torch.ones(out)
    bias = layer.bias.detach().float().clone() if layer.bias is not None else torch.zeros(out)
    tensors[f"{name}.bn_shift"] = bias
    padding = layer.padding
    if isinstance(padding, (tuple, list)):
        padding = list(padding)
    return {
        "op": "layer",
        "tensor": name,
        "kind": layer.kind,
        "stride": int(layer.stride),
        "padding": padding,
        "groups": int(layer.weight.shape[0]) if layer.depthwise else 1,
        "w_bits": int(w_bits[0]),
        "a_bits": int(a_bits[0]),
        "a_signed": bool(layer.aq.signed),
    }


def _fold(tensors: dict[str, Tensor], name: str, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold ``bn`` after layer ``name``: ``bn(s·acc + b) = (g·s)·acc + (g·b + h)``."""
    g, h = _fold_bn(bn)
    tensors[f"{name}.bn_scale"] = tensors[f"{name}.bn_scale"] * g
    tensors[f"{name}.bn_shift"] = tensors[f"{name}.bn_shift"] * g + h


@torch.no_grad()
def reference_forward_graph(model: IntegerModel, x: Tensor) -> Tensor:
    """See ``run_graph``: the network's output for ``x`` (float32)."""
    return run_graph(model, x)[0]


@torch.no_grad()
def run_graph(model: IntegerModel, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
    """Run an exported converted network from its integers and op list alone.

    Each layer quantizes its input at its activation bits, accumulates ``Σ q_a q_w`` exactly in
    float64 and rescales by ``s_a · s_w · bn_scale`` plus ``bn_shift``; every other op is the
    function its ``call`` names (``FUNCTIONS``).

    Returns:
        The network's output (float32), and every op's value by name.
    """
    t = model.tensors
    env: dict[str, Any] = {}
    out = None
    for op in model.graph:
        kind = op["op"]
        if kind == "input":
            env[op["name"]] = x.float()
            continue
        args = _decode(op.get("args", []), env)
        if kind == "output":
            out = args[0]
            break
        if kind == "layer":
            name, h = op["tensor"], args[0]
            clip = float(t[f"{name}.act_clip"])
            q, s_a = quantize_input(h.float(), clip, op["a_bits"], op["a_signed"])
            w = t[f"{name}.weight_int"].to(torch.float64)
            if op["kind"] == "conv":
                acc = F.conv2d(q.double(), w, None, op["stride"], op["padding"], 1, op["groups"])
                shape: tuple[int, ...] = (1, -1, 1, 1)
            else:
                acc = F.linear(q.double(), w)
                shape = (1, -1)
            mult = s_a * t[f"{name}.weight_scale"].double() * t[f"{name}.bn_scale"].double()
            env[op["name"]] = (
                acc * mult.view(shape) + t[f"{name}.bn_shift"].double().view(shape)
            ).float()
        elif kind == "affine":
            h = args[0]
            shape = (1, -1) + (1,) * (h.dim() - 2)
            name = op["tensor"]
            env[op["name"]] = h * t[f"{name}.scale"].view(shape) + t[f"{name}.shift"].view(shape)
        elif kind == "call":
            fn = FUNCTIONS.get(op["fn"])
            if fn is None:
                raise DnasError(f"op {op['name']}: unknown function {op['fn']!r} in the export")
            kwargs = {k: _decode(v, env) for k, v in (op.get("kwargs") or {}).items()}
            env[op["name"]] = fn(*args, **kwargs)
        else:
            raise DnasError(f"op {op.get('name')}: unknown kind {kind!r} in the export")
    if out is None:
        raise DnasError("the export has no output op")
    return out.float(), env
