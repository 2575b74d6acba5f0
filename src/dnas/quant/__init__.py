"""Quantizers: uniform weight/activation fake quantization and fractional bit-widths.

Weights: symmetric, per-output-channel max-abs scale. Activations: unsigned PACT (Choi et al.
2018) or signed with a learnable clip. Fractional bit-widths: FracBits (Yang & Jin, arXiv
2007.02017). Each quantizer is one autograd function with a straight-through estimator.
"""

from dnas.quant.functions import (
    act_levels,
    levels_tensor,
    quantize_act,
    quantize_act_frac,
    quantize_weight,
    quantize_weight_frac,
    weight_levels,
)

__all__ = [
    "act_levels",
    "levels_tensor",
    "quantize_act",
    "quantize_act_frac",
    "quantize_weight",
    "quantize_weight_frac",
    "weight_levels",
]
