"""A child network as integers: weights at their bit-widths, per-channel scales, folded BN.

Every quantized layer ``L`` (``stem``, ``blocks.I.expand``/``dw``/``project``, ``last``,
``classifier``) is stored as:

- ``L.weight_int`` (int8): ``round(W / s_w)`` in ``[−(2^(b_w−1) − 1), 2^(b_w−1) − 1]``;
- ``L.weight_scale`` (float32 ``[O]``): ``s_w``, the per-output-channel max-abs scale;
- ``L.act_clip`` (float32 ``[]``): the PACT clip α of the layer's *input*; the input integer is
  ``round(clamp(x, lo, α) / s_a)`` with ``s_a = α / n_a``, ``lo = 0`` and ``n_a = 2^(b_a) − 1``
  when unsigned, ``lo = −α`` and ``n_a = 2^(b_a−1) − 1`` when signed;
- ``L.bn_scale``/``L.bn_shift`` (float32 ``[O]``): the following batch norm folded (exactly) into
  ``y = bn_scale · conv + bn_shift``; for the classifier ``1`` and its bias.

So ``y = (s_a · s_w · bn_scale) · Σ q_a q_w + bn_shift`` with an integer accumulator ``Σ q_a q_w``.
The layer graph (order, strides, groups, bits, signedness, ReLUs, residual adds) is JSON in the
file's metadata, beside the architecture YAML: ``reference_forward`` needs nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnas.ops import QuantConv2d, QuantDepthwiseConv2d, QuantLayer, QuantLinear
from dnas.quant.functions import MIN_CLIP, act_levels, weight_levels

FORMAT = "dnas-integer-v1"
GRAPH_FORMAT = "dnas-integer-graph-v1"
"""A converted network's export (``dnas.export.graph``): the same tensors, a node list as graph."""


@dataclass
class IntegerModel:
    """The exported network: tensors by name, the op graph and free-form metadata.

    Attributes:
        tensors: ``name → tensor`` (see the module docstring for the names).
        graph: ops in execution order: ``{"op": "conv"|"linear", "name", "stride", "groups",
            "padding", "w_bits", "a_bits", "a_signed", "relu"}``, ``{"op": "push"}`` (keep the
            current activation for a residual), ``{"op": "add"}`` (add the kept one),
            ``{"op": "pool"}`` (global average pool).
        meta: strings stored with the file (architecture YAML, input normalisation, …).
    """

    tensors: dict[str, Tensor]
    graph: list[dict[str, Any]]
    meta: dict[str, str] = field(default_factory=dict)

    def layer_names(self) -> list[str]:
        return [op["name"] for op in self.graph if op["op"] in ("conv", "linear")]


def _weight_int(w: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """The integers and per-output-channel scales of ``w`` ``[O, ...]`` (as the fake quantizer)."""
    levels = float(weight_levels(bits))
    amax = w.abs().amax(dim=tuple(range(1, w.dim()))).clamp_min(1e-8)
    scale = amax / levels
    q = (w / scale.view(-1, *([1] * (w.dim() - 1)))).round()
    assert int(q.abs().max()) <= levels
    return q.to(torch.int8), scale.to(torch.float32)


def _fold_bn(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    inv = torch.rsqrt(bn.running_var + bn.eps)
    scale = bn.weight * inv
    return scale.float(), (bn.bias - bn.running_mean * scale).float()


def _layer(
    tensors: dict[str, Tensor], name: str, layer: QuantLayer, bn: nn.BatchNorm2d | None, **op
) -> dict[str, Any]:
    w_bits, a_bits = layer.wq.bits.bits, layer.aq.bits.bits
    if len(w_bits) != 1 or len(a_bits) != 1:
        raise ValueError(f"layer {name} has searchable bits: export a ChildNet, not a SuperNet")
    weight = layer.weight.detach().float()
    if isinstance(layer, QuantDepthwiseConv2d) and weight.shape[-1] != layer.max_kernel:
        raise ValueError(f"layer {name}: depthwise weight does not match its kernel")
    q, s = _weight_int(weight, w_bits[0])
    tensors[f"{name}.weight_int"] = q
    tensors[f"{name}.weight_scale"] = s
    tensors[f"{name}.act_clip"] = torch.tensor(max(float(layer.aq.clip), MIN_CLIP))
    if bn is not None:
        tensors[f"{name}.bn_scale"], tensors[f"{name}.bn_shift"] = _fold_bn(bn)
    else:
        assert isinstance(layer, QuantLinear)
        tensors[f"{name}.bn_scale"] = torch.ones(layer.out_features)
        tensors[f"{name}.bn_shift"] = layer.bias.detach().float().clone()
    return {
        "name": name,
        "w_bits": int(w_bits[0]),
        "a_bits": int(a_bits[0]),
        "a_signed": bool(layer.aq.signed),
        **op,
    }


@torch.no_grad()
def export_integer(child: nn.Module, meta: dict[str, str] | None = None) -> IntegerModel:
    """The integer form of a ``ChildNet`` (its eval-mode forward; BN running statistics used).

    Args:
        child: a trained ``dnas.supernet.ChildNet``.
        meta: strings to store with it (e.g. the architecture YAML).
    """
    from dnas.supernet import ChildNet, StaticBlock

    if not isinstance(child, ChildNet):
        raise TypeError(f"export_integer takes a ChildNet, got {type(child).__name__}")
    tensors: dict[str, Tensor] = {}
    graph: list[dict[str, Any]] = []

    def conv(name: str, layer: QuantConv2d | QuantDepthwiseConv2d, bn, relu: bool = False):
        if isinstance(layer, QuantDepthwiseConv2d):
            groups, k = layer.channels, layer.max_kernel
        else:
            groups, k = 1, layer.kernel_size
        graph.append(
            _layer(
                tensors,
                name,
                layer,
                bn,
                op="conv",
                stride=int(layer.stride),
                groups=int(groups),
                padding=int(k // 2),
                relu=relu,
            )
        )

    conv("stem", child.stem, child.stem_bn, relu=True)
    for i, block in enumerate(child.blocks):
        assert isinstance(block, StaticBlock)
        name = f"blocks.{i}"
        if block.residual:
            graph.append({"op": "push"})
        if block.expand is not None:
            conv(f"{name}.expand", block.expand, block.bn1)
        conv(f"{name}.dw", block.dw, block.bn2)
        conv(f"{name}.project", block.project, block.bn3)
        if block.residual:
            graph.append({"op": "add"})
    conv("last", child.last, child.last_bn, relu=True)
    graph.append({"op": "pool"})
    graph.append(_layer(tensors, "classifier", child.classifier, None, op="linear", relu=False))
    meta = {"format": FORMAT, **(meta or {})}
    return IntegerModel({k: v.contiguous() for k, v in tensors.items()}, graph, meta)


def save_safetensors(model: IntegerModel, path: str | Path) -> Path:
    """Write ``model`` as one ``.safetensors`` file (graph and metadata in its header), atomically."""
    from safetensors.torch import save_file

    from dnas.atomic import atomic_path

    path = Path(path)
    meta = {**model.meta, "graph": json.dumps(model.graph)}
    with atomic_path(path) as tmp:
        save_file(model.tensors, str(tmp), metadata=meta)
    return path


def load_safetensors(path: str | Path) -> IntegerModel:
    """Read a file written by ``save_safetensors``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such export: {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
    if meta.get("format") not in (FORMAT, GRAPH_FORMAT) or "graph" not in meta:
        raise ValueError(f"{path} is not a dnas integer export ({FORMAT} or {GRAPH_FORMAT})")
    graph = json.loads(meta.pop("graph"))
    return IntegerModel(tensors, graph, meta)


def quantize_input(x: Tensor, clip: float, bits: int, signed: bool) -> tuple[Tensor, float]:
    """The integers ``round(clamp(x) / s_a)`` of an activation and its scale ``s_a``."""
    levels = act_levels(bits, signed)
    scale = clip / levels
    lo = -clip if signed else 0.0
    return (x.clamp(lo, clip) / scale).round(), scale


@torch.no_grad()
def reference_forward(model: IntegerModel, x: Tensor) -> Tensor:
    """Run an exported network from its integers alone: dequantize, conv, requantize.

    Each layer quantizes its input to integers at its activation bits, accumulates
    ``Σ q_a q_w`` exactly (float64 holds these integer sums exactly), and rescales by
    ``s_a · s_w · bn_scale`` plus ``bn_shift``.

    Args:
        model: an ``IntegerModel``.
        x: normalised images ``[B, C, R, R]``.

    Returns:
        Logits ``[B, num_classes]`` (float64).
    """
    t = model.tensors
    h = x.to(torch.float32)
    stack: list[Tensor] = []
    for op in model.graph:
        kind = op["op"]
        if kind == "push":
            stack.append(h)
            continue
        if kind == "add":
            h = h + stack.pop()
            continue
        if kind == "pool":
            h = h.mean((2, 3))
            continue
        name = op["name"]
        # The activation is quantized in float32, as the fake quantizer does, so that values on a
        # rounding boundary land on the same integer.
        clip = float(t[f"{name}.act_clip"])
        q, s_a = quantize_input(h.float(), clip, op["a_bits"], op["a_signed"])
        w = t[f"{name}.weight_int"].to(torch.float64)
        if kind == "conv":
            acc = F.conv2d(q.double(), w, None, op["stride"], op["padding"], 1, op["groups"])
            shape = (1, -1, 1, 1)
        else:
            acc = F.linear(q.double(), w)
            shape = (1, -1)
        mult = s_a * t[f"{name}.weight_scale"].double() * t[f"{name}.bn_scale"].double()
        h = acc * mult.view(shape) + t[f"{name}.bn_shift"].double().view(shape)
        if op.get("relu"):
            h = h.clamp_min(0)
        h = h.float() if kind == "conv" else h
    return h
