"""The layer graph at the core of every search space, and its producers.

``LayerGraph`` holds a network's searchable conv and linear layers, its channel groups and its
skippable residual branches as data, with exact MACs, BitOps and model size for any
``GraphChoice``. ``graph_of_space`` produces it for a MobileNetV2 ``SearchSpace``, and
``dnas.graph.convert.convert`` for a user's ``nn.Module`` (torch.fx; not re-exported here, so that
the name ``dnas.graph.convert`` stays the module and ``import dnas.graph`` does not import torch).
"""

from dnas.graph.graph import (
    LAYER_KINDS,
    ChannelGroup,
    GraphChoice,
    GraphError,
    GraphLayer,
    LayerGraph,
    ResolvedLayer,
    SkipChoice,
)
from dnas.graph.mbv2 import choice_of_arch, graph_of_space

__all__ = [
    "LAYER_KINDS",
    "ChannelGroup",
    "GraphChoice",
    "GraphError",
    "GraphLayer",
    "LayerGraph",
    "ResolvedLayer",
    "SkipChoice",
    "choice_of_arch",
    "graph_of_space",
]
