"""Deployment export of a trained child network: integers at each layer's bits.

``export_integer`` turns a ``ChildNet`` into integer weights with per-channel scales, activation
quantizers (bits, clip, signedness) and batch norm folded into a per-channel scale and shift, plus
the layer graph; ``save_safetensors``/``load_safetensors`` write and read it; ``reference_forward``
runs it from those tensors alone (dequantize, conv, requantize) and ``to_onnx`` writes the same
network as ONNX with QuantizeLinear/DequantizeLinear pairs.
"""

from dnas.export.integer import (
    IntegerModel,
    export_integer,
    load_safetensors,
    reference_forward,
    save_safetensors,
)

__all__ = [
    "IntegerModel",
    "export_integer",
    "load_safetensors",
    "reference_forward",
    "save_safetensors",
]
