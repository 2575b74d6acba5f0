"""The exported network as ONNX: QuantizeLinear/DequantizeLinear pairs around float convs.

Built directly from an ``IntegerModel`` with ``onnx.helper`` (no tracing), so the ONNX graph is the
integer export, node for node. Each quantized layer reads

    x → Clip(lo, α) → QuantizeLinear(s_a, 0) → DequantizeLinear → Conv/Gemm(W) → Mul(bn_scale)
      → Add(bn_shift) [→ Relu]

with ``W = DequantizeLinear(weight_int, s_w, axis=0)``. ONNX has no sub-8-bit integer types in
the opsets that every runtime supports, so a b-bit value is stored as int8 (weights and signed
activations) or uint8 (unsigned activations) restricted to its narrower range: the Clip before
QuantizeLinear and the integer weights themselves keep every value within ``±(2^(b−1) − 1)``
(signed) or ``[0, 2^b − 1]`` (unsigned), so the numbers are exactly those of a b-bit quantizer.
The input is the normalised image ``[N, C, R, R]`` (see the ``input_normalization`` metadata).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnas.export.integer import IntegerModel
from dnas.quant.functions import act_levels

OPSET = 13


def _layer_nodes(
    t: dict, const, name: str, x: str, out: str, op: dict, conv: bool, pads: list[int]
) -> list:
    """The ONNX nodes of one quantized layer ``name`` reading ``x`` and writing ``out``:
    Clip → QuantizeLinear → DequantizeLinear → Conv/Gemm(DequantizeLinear(W)) → Mul → Add."""
    from onnx import helper

    n = name
    clip = np.float32(t[f"{n}.act_clip"])
    signed = bool(op["a_signed"])
    scale = np.float32(clip / act_levels(op["a_bits"], signed))
    zero = np.array(0, dtype=np.int8 if signed else np.uint8)
    lo = np.float32(-clip if signed else 0.0)
    w_int = t[f"{n}.weight_int"]
    nodes = [
        helper.make_node(
            "Clip", [x, const(f"{n}.lo", lo), const(f"{n}.hi", clip)], [f"{n}.clipped"]
        ),
        helper.make_node(
            "QuantizeLinear",
            [f"{n}.clipped", const(f"{n}.a_scale", scale), const(f"{n}.a_zero", zero)],
            [f"{n}.a_int"],
        ),
        helper.make_node(
            "DequantizeLinear", [f"{n}.a_int", f"{n}.a_scale", f"{n}.a_zero"], [f"{n}.a_deq"]
        ),
        helper.make_node(
            "DequantizeLinear",
            [
                const(f"{n}.weight_int", w_int),
                const(f"{n}.weight_scale", t[f"{n}.weight_scale"].astype(np.float32)),
                const(f"{n}.weight_zero", np.zeros(w_int.shape[0], dtype=np.int8)),
            ],
            [f"{n}.w"],
            axis=0,
        ),
    ]
    if conv:
        k = int(w_int.shape[-1])
        nodes.append(
            helper.make_node(
                "Conv",
                [f"{n}.a_deq", f"{n}.w"],
                [f"{n}.acc"],
                kernel_shape=[k, k],
                strides=[op["stride"]] * 2,
                pads=pads,
                group=int(op["groups"]),
            )
        )
        shape: tuple[int, ...] = (1, -1, 1, 1)
    else:
        nodes.append(helper.make_node("Gemm", [f"{n}.a_deq", f"{n}.w"], [f"{n}.acc"], transB=1))
        shape = (1, -1)
    bn_scale = t[f"{n}.bn_scale"].astype(np.float32).reshape(shape)
    bn_shift = t[f"{n}.bn_shift"].astype(np.float32).reshape(shape)
    nodes += [
        helper.make_node("Mul", [f"{n}.acc", const(f"{n}.bn_scale", bn_scale)], [f"{n}.mul"]),
        helper.make_node("Add", [f"{n}.mul", const(f"{n}.bn_shift", bn_shift)], [out]),
    ]
    return nodes


def to_onnx(model: IntegerModel, input_shape: tuple[int, int, int], num_classes: int):
    """The ``onnx.ModelProto`` of ``model`` (input ``input``, output ``logits``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    t = {k: v.detach().cpu().numpy() for k, v in model.tensors.items()}
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    h = "input"
    stack: list[str] = []
    for i, op in enumerate(model.graph):
        kind = op["op"]
        if kind == "push":
            stack.append(h)
            continue
        if kind == "add":
            out = f"add_{i}"
            nodes.append(helper.make_node("Add", [h, stack.pop()], [out]))
            h = out
            continue
        if kind == "pool":
            nodes.append(helper.make_node("GlobalAveragePool", [h], [f"pool_{i}"]))
            nodes.append(helper.make_node("Flatten", [f"pool_{i}"], [f"flat_{i}"], axis=1))
            h = f"flat_{i}"
            continue
        n = op["name"]
        p = int(op.get("padding", 0))
        nodes += _layer_nodes(t, const, n, h, f"{n}.out", op, kind == "conv", [p, p, p, p])
        h = f"{n}.out"
        if op.get("relu"):
            nodes.append(helper.make_node("Relu", [h], [f"{n}.relu"]))
            h = f"{n}.relu"
    nodes.append(helper.make_node("Identity", [h], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "dnas_child",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        inits,
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="dnas"
    )
    proto.ir_version = 8
    for key, value in model.meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return proto


def save_onnx(proto, path: str | Path) -> Path:
    """Write an ONNX model atomically."""
    from dnas.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return path


def graph_to_onnx(model: IntegerModel, input_shape: tuple[int, ...], num_classes: int):
    """The ``onnx.ModelProto`` of a converted network's export (``dnas.export.graph``).

    Each ``layer`` op is the QuantizeLinear/DequantizeLinear pattern of ``to_onnx``; an
    ``affine`` op a Mul and an Add; every ``call`` op its ONNX counterpart. Sizes the network
    computes from its input (``x.size(3)``, ``view(x.size(0), -1)``) are taken from a run of the
    export on a batch of two, the batch dimension left free (``N``).

    Raises:
        DnasError: an op with no ONNX counterpart here (named).
    """
    import onnx
    import torch
    from onnx import TensorProto, helper, numpy_helper

    from dnas.errors import DnasError
    from dnas.export.graph import run_graph

    _, env = run_graph(model, torch.zeros(2, *input_shape))
    t = {k: v.detach().cpu().numpy() for k, v in model.tensors.items()}
    nodes, inits = [], []
    names: dict[str, str] = {}  # op name → ONNX value name (tensors only)

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def static(value):
        """An argument's value: tensors stay references, the rest are the run's numbers."""
        if isinstance(value, dict) and set(value) == {"node"}:
            v = env[value["node"]]
            return ("tensor", names[value["node"]]) if torch.is_tensor(v) else v
        if isinstance(value, list):
            return [static(v) for v in value]
        return value

    def operand(value, i: int, where: str) -> str:
        v = static(value)
        if isinstance(v, tuple) and v and v[0] == "tensor":
            return v[1]
        if isinstance(v, (int, float)):
            return const(f"{where}.c{i}", np.array(v, dtype=np.float32))
        raise DnasError(f"op {where}: operand {v!r} has no ONNX form here")

    def pair(v) -> list[int]:
        return list(v) if isinstance(v, (list, tuple)) else [int(v), int(v)]

    for op in model.graph:
        kind, n = op["op"], op["name"]
        if kind == "input":
            names[n] = "input"
            continue
        args = op.get("args", [])
        if kind == "output":
            nodes.append(helper.make_node("Identity", [operand(args[0], 0, n)], ["logits"]))
            break
        if kind == "affine":
            x = operand(args[0], 0, n)
            shape = (1, -1) + (1,) * (env[n].dim() - 2)
            scale = t[f"{op['tensor']}.scale"].astype(np.float32).reshape(shape)
            shift = t[f"{op['tensor']}.shift"].astype(np.float32).reshape(shape)
            nodes.append(helper.make_node("Mul", [x, const(f"{n}.scale", scale)], [f"{n}.mul"]))
            nodes.append(helper.make_node("Add", [f"{n}.mul", const(f"{n}.shift", shift)], [n]))
            names[n] = n
            continue
        if kind == "layer":
            x, L = operand(args[0], 0, n), op["tensor"]
            ph, pw = pair(op["padding"]) if op["kind"] == "conv" else (0, 0)
            nodes += _layer_nodes(t, const, L, x, n, op, op["kind"] == "conv", [ph, pw, ph, pw])
            names[n] = n
            continue
        # a call: only ops on tensors get ONNX nodes; sizes were read off the run
        if not torch.is_tensor(env[n]):
            continue
        fn, kw = op["fn"], {k: static(v) for k, v in (op.get("kwargs") or {}).items()}
        vals = [static(a) for a in args]
        x = operand(args[0], 0, n) if args and not isinstance(args[0], list) else None
        out = env[n]
        if fn == "identity":
            nodes.append(helper.make_node("Identity", [x], [n]))
        elif fn in ("relu", "sigmoid", "tanh"):
            nodes.append(helper.make_node(fn.capitalize(), [x], [n]))
        elif fn in ("relu6", "hardtanh"):
            lo_v = float(
                kw.get("min_val", vals[1] if len(vals) > 1 else (0.0 if fn == "relu6" else -1.0))
            )
            hi_v = float(
                kw.get("max_val", vals[2] if len(vals) > 2 else (6.0 if fn == "relu6" else 1.0))
            )
            nodes.append(
                helper.make_node(
                    "Clip",
                    [x, const(f"{n}.lo", np.float32(lo_v)), const(f"{n}.hi", np.float32(hi_v))],
                    [n],
                )
            )
        elif fn == "leaky_relu":
            alpha = float(kw.get("negative_slope", vals[1] if len(vals) > 1 else 0.01))
            nodes.append(helper.make_node("LeakyRelu", [x], [n], alpha=alpha))
        elif fn in ("hardsigmoid", "hardswish"):
            hs = f"{n}.hs" if fn == "hardswish" else n
            nodes.append(helper.make_node("HardSigmoid", [x], [hs], alpha=1.0 / 6, beta=0.5))
            if fn == "hardswish":
                nodes.append(helper.make_node("Mul", [x, hs], [n]))
        elif fn == "silu":
            nodes.append(helper.make_node("Sigmoid", [x], [f"{n}.sig"]))
            nodes.append(helper.make_node("Mul", [x, f"{n}.sig"], [n]))
        elif fn in ("add", "sub", "mul", "truediv"):
            onnx_op = {"add": "Add", "sub": "Sub", "mul": "Mul", "truediv": "Div"}[fn]
            nodes.append(
                helper.make_node(onnx_op, [operand(args[0], 0, n), operand(args[1], 1, n)], [n])
            )
        elif fn == "cat":
            dim = kw.get("dim", vals[1] if len(vals) > 1 else 0)
            parts = [operand(a, i, n) for i, a in enumerate(args[0])]
            nodes.append(helper.make_node("Concat", parts, [n], axis=int(dim)))
        elif fn in ("flatten", "view"):
            target = [0, *out.shape[1:]]  # 0: the batch dimension as it comes
            nodes.append(
                helper.make_node(
                    "Reshape", [x, const(f"{n}.shape", np.array(target, dtype=np.int64))], [n]
                )
            )
        elif fn == "mean":
            dims = kw.get("dim", vals[1] if len(vals) > 1 else None)
            keep = bool(kw.get("keepdim", vals[2] if len(vals) > 2 else False))
            axes = [dims] if isinstance(dims, int) else list(dims or [])
            nodes.append(helper.make_node("ReduceMean", [x], [n], axes=axes, keepdims=int(keep)))
        elif fn in ("max_pool2d", "avg_pool2d"):
            ks = pair(kw.get("kernel_size", vals[1] if len(vals) > 1 else None))
            st = kw.get("stride", vals[2] if len(vals) > 2 else None)
            st = ks if st in (None, []) else pair(st)
            pd = pair(kw.get("padding", vals[3] if len(vals) > 3 else 0))
            attrs = {
                "kernel_shape": ks,
                "strides": st,
                "pads": [pd[0], pd[1], pd[0], pd[1]],
                "ceil_mode": int(bool(kw.get("ceil_mode", False))),
            }
            if fn == "avg_pool2d":
                attrs["count_include_pad"] = int(bool(kw.get("count_include_pad", True)))
            onnx_op = "MaxPool" if fn == "max_pool2d" else "AveragePool"
            nodes.append(helper.make_node(onnx_op, [x], [n], **attrs))
        elif fn in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
            src = env[args[0]["node"]]
            h_in, w_in = src.shape[2:]
            h_out, w_out = out.shape[2:]
            if (h_out, w_out) == (1, 1):
                onnx_op = "GlobalAveragePool" if fn.startswith("adaptive_avg") else "GlobalMaxPool"
                nodes.append(helper.make_node(onnx_op, [x], [n]))
            elif h_in % h_out == 0 and w_in % w_out == 0:
                ks = [h_in // h_out, w_in // w_out]
                onnx_op = "AveragePool" if fn.startswith("adaptive_avg") else "MaxPool"
                nodes.append(helper.make_node(onnx_op, [x], [n], kernel_shape=ks, strides=ks))
            else:
                raise DnasError(
                    f"op {n}: {fn} from {h_in}x{w_in} to {h_out}x{w_out} has no ONNX form here"
                )
        else:
            raise DnasError(f"op {n}: {fn} has no ONNX form in this export (yet)")
        names[n] = n
    graph = helper.make_graph(
        nodes,
        "dnas_network",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        inits,
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="dnas"
    )
    proto.ir_version = 8
    for key, value in model.meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return proto
