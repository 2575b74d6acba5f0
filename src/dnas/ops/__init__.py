"""Searchable ops, each owning its architecture parameters (all named ``arch_*``).

- ``GumbelKernel``: Gumbel-softmax kernel choice (FBNet) over centre crops of one shared depthwise
  weight (once-for-all), convolved once with the mixed kernel (``QuantDepthwiseConv2d``).
- ``FractionalWidth``: a fractional channel mask over ordered widths, leading channels kept.
- ``BitChoice`` in ``WeightQuantizer``/``ActQuantizer``: fractional bit-widths (FracBits).
- ``QuantConv2d``, ``QuantDepthwiseConv2d``, ``QuantLinear``, ``SlicedBatchNorm2d``: layers whose
  channels can be sliced (discrete modes) or masked (gumbel mode).

Sampling modes: ``"gumbel"`` (search), ``"uniform"`` (warm-up), ``"fixed"``, ``"argmax"``.
"""

from dnas.ops.bits import ActQuantizer, BitChoice, WeightQuantizer
from dnas.ops.choice import ARCH_PREFIX, MODES, ArchChoice, Mode, OrderedIndex, check_mode
from dnas.ops.conv import QuantConv2d, QuantDepthwiseConv2d, QuantLayer, QuantLinear
from dnas.ops.kernel import (
    GumbelKernel,
    crop_masks,
    gumbel_softmax,
    mix_kernels,
    mix_separate_kernels,
)
from dnas.ops.norm import SlicedBatchNorm2d
from dnas.ops.width import FractionalWidth

__all__ = [
    "ARCH_PREFIX",
    "MODES",
    "ActQuantizer",
    "ArchChoice",
    "BitChoice",
    "FractionalWidth",
    "GumbelKernel",
    "Mode",
    "OrderedIndex",
    "QuantConv2d",
    "QuantDepthwiseConv2d",
    "QuantLayer",
    "QuantLinear",
    "SlicedBatchNorm2d",
    "WeightQuantizer",
    "check_mode",
    "crop_masks",
    "gumbel_softmax",
    "mix_kernels",
    "mix_separate_kernels",
]
