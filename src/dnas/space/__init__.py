"""The search space as plain data: choices, block specs, Architecture and every costed layer.

Nothing here imports torch, Lightning or Hydra. A space is built from a config mapping
(``SearchSpace.from_dict``) or by name (``load_space("fmnist_mbv2")``); an ``Architecture`` resolves
each of its choices and an ``ArchState`` holds them as grid indices; ``costed_layers()`` and
``arch_indices()`` are what cost tables are built on.
"""

from dnas.space.arch_state import ArchState
from dnas.space.architecture import Architecture, BlockChoice, ConvBits
from dnas.space.choices import SKIP, BitChoices, KernelChoice, nearest_index, ratio_widths
from dnas.space.errors import SpaceError
from dnas.space.layers import ROLES, CostedLayer, LayerKey
from dnas.space.registry import builtin_space_names, load_space
from dnas.space.search_space import SearchSpace
from dnas.space.spec import BlockSpec, ClassifierSpec, LastSpec, StageSpec, StemSpec

__all__ = [
    "ROLES",
    "SKIP",
    "ArchState",
    "Architecture",
    "BitChoices",
    "BlockChoice",
    "BlockSpec",
    "ClassifierSpec",
    "ConvBits",
    "CostedLayer",
    "KernelChoice",
    "LastSpec",
    "LayerKey",
    "SearchSpace",
    "SpaceError",
    "StageSpec",
    "StemSpec",
    "builtin_space_names",
    "load_space",
    "nearest_index",
    "ratio_widths",
]
