"""The supernet (searchable blocks built from ``dnas.ops``), the static child network, BN tools.

``SuperNet`` relaxes every choice of a search space (FBNet's Gumbel kernel choice, a fractional
width mask, FracBits bit-widths); ``ChildNet`` is the plain network of one derived architecture,
initialised from the supernet as in once-for-all.
"""

from dnas.supernet.block import SearchableBlock, StaticBlock
from dnas.supernet.bn import bn_statistics, load_bn_statistics, recalibrate_bn
from dnas.supernet.child import ChildNet
from dnas.supernet.network import QuantMobileNetV2
from dnas.supernet.relaxed import RelaxedArch
from dnas.supernet.supernet import SuperNet, is_arch_parameter

__all__ = [
    "ChildNet",
    "QuantMobileNetV2",
    "RelaxedArch",
    "SearchableBlock",
    "StaticBlock",
    "SuperNet",
    "bn_statistics",
    "is_arch_parameter",
    "load_bn_statistics",
    "recalibrate_bn",
]
