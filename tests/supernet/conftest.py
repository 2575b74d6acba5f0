"""Shared fixtures: the default space and a supernet with non-trivial BN statistics and clips."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dnas.space import SearchSpace, load_space
from dnas.supernet import SuperNet


@pytest.fixture(scope="session")
def space() -> SearchSpace:
    return load_space("fmnist_mbv2")


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN affine parameters and running statistics and PACT clips (not the defaults)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
        for name, p in model.named_parameters():
            if name.endswith("clip"):
                p.fill_(float(torch.rand((), generator=gen)) * 3 + 1.0)
    return model


@pytest.fixture
def supernet(space: SearchSpace) -> SuperNet:
    torch.manual_seed(0)
    return randomize(SuperNet(space))


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(4, 1, 28, 28)
