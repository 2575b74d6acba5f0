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
        clip = np.float32(t[f"{n}.act_clip"])
        signed = bool(op["a_signed"])
        scale = np.float32(clip / act_levels(op["a_bits"], signed))
        zero = np.array(0, dtype=np.int8 if signed else np.uint8)
        lo = np.float32(-clip if signed else 0.0)
        nodes += [
            helper.make_node(
                "Clip", [h, const(f"{n}.lo", lo), const(f"{n}.hi", clip)], [f"{n}.clipped"]
            ),
            helper.make_node(
                "QuantizeLinear",
                [f"{n}.clipped", const(f"{n}.a_scale", scale), const(f"{n}.a_zero", zero)],
                [f"{n}.a_int"],
            ),
            helper.make_node(
                "DequantizeLinear",
                [f"{n}.a_int", f"{n}.a_scale", f"{n}.a_zero"],
                [f"{n}.a_deq"],
            ),
        ]
        w_int = t[f"{n}.weight_int"]
        nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [
                    const(f"{n}.weight_int", w_int),
                    const(f"{n}.weight_scale", t[f"{n}.weight_scale"].astype(np.float32)),
                    const(f"{n}.weight_zero", np.zeros(w_int.shape[0], dtype=np.int8)),
                ],
                [f"{n}.w"],
                axis=0,
            )
        )
        if kind == "conv":
            k = int(w_int.shape[-1])
            p = int(op["padding"])
            nodes.append(
                helper.make_node(
                    "Conv",
                    [f"{n}.a_deq", f"{n}.w"],
                    [f"{n}.acc"],
                    kernel_shape=[k, k],
                    strides=[op["stride"]] * 2,
                    pads=[p, p, p, p],
                    group=int(op["groups"]),
                )
            )
            shape = (1, -1, 1, 1)
        else:
            nodes.append(helper.make_node("Gemm", [f"{n}.a_deq", f"{n}.w"], [f"{n}.acc"], transB=1))
            shape = (1, -1)
        bn_scale = t[f"{n}.bn_scale"].astype(np.float32).reshape(shape)
        bn_shift = t[f"{n}.bn_shift"].astype(np.float32).reshape(shape)
        nodes += [
            helper.make_node("Mul", [f"{n}.acc", const(f"{n}.bn_scale", bn_scale)], [f"{n}.mul"]),
            helper.make_node("Add", [f"{n}.mul", const(f"{n}.bn_shift", bn_shift)], [f"{n}.out"]),
        ]
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
