"""ChildNet: equality with the supernet in fixed mode, structure, state dict; BN recalibration."""

from __future__ import annotations

import io
import random

import pytest
import torch
from torch import nn

from dnas.supernet import ChildNet, SuperNet, recalibrate_bn

from .conftest import randomize


def _archs(space):
    rng = random.Random(0)
    yield space.largest_arch()
    yield space.smallest_arch()
    for _ in range(3):
        yield space.random_arch(rng)


def _calibration(n: int = 3, seed: int = 5) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 1, 28, 28, generator=gen) for _ in range(n)]


@pytest.mark.parametrize("kernel_weights", ["shared", "separate"])
def test_child_equals_supernet_in_fixed_mode(space, images, kernel_weights):
    """Same weights, BN re-estimated on the same batches: the same network (the supernet's
    randomized statistics are not the child's, so a copied-statistics child fails this). With one
    depthwise weight per kernel size the child takes its kernel's own weight."""
    torch.manual_seed(0)
    supernet = randomize(SuperNet(space, kernel_weights=kernel_weights))
    batches = _calibration()
    for arch in _archs(space):
        supernet.set_mode("fixed", arch)
        child = ChildNet.from_supernet(supernet, arch, batches, num_batches=3).eval()
        recalibrate_bn(supernet, batches, 3)
        supernet.eval()
        torch.testing.assert_close(child(images), supernet(images), atol=1e-5, rtol=1e-4)


def test_child_from_warmed_up_supernet_has_its_own_statistics(space, images):
    """After uniform warm-up the supernet's statistics average over many sub-networks; the
    child's must be its own: those a plain re-estimation of the child gives."""
    torch.manual_seed(0)
    supernet = SuperNet(space)
    supernet.set_mode("uniform")
    supernet.train()
    with torch.no_grad():
        for x in _calibration(6, seed=9):
            supernet(x)
    arch = space.random_arch(4)
    batches = _calibration()
    child = ChildNet.from_supernet(supernet, arch, batches, num_batches=3)
    ref = ChildNet(space, arch)
    ref.load_state_dict(child.state_dict())
    recalibrate_bn(ref, batches, 3)
    for (name, a), b in zip(child.named_buffers(), ref.buffers()):
        if "running" in name:
            torch.testing.assert_close(a, b, msg=name)
    # ... and they differ from the supernet's own (the old copy would have kept those).
    supernet_var = supernet.last_bn.running_var
    assert not torch.allclose(child.last_bn.running_var, supernet_var)


def test_from_supernet_requires_calibration(supernet, space):
    arch = space.random_arch(0)
    with pytest.raises(TypeError):
        ChildNet.from_supernet(supernet, arch)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="re-estimated"):
        ChildNet.from_supernet(supernet, arch, _calibration(), num_batches=0)
    with pytest.raises(ValueError, match="no batch"):
        ChildNet.from_supernet(supernet, arch, [], num_batches=2)


def test_child_structure(space):
    arch = space.smallest_arch()
    child = ChildNet(space, arch)
    assert len(child.blocks) == arch.depth
    assert not any("arch_" in n for n, _ in child.named_parameters())
    block = child.blocks[0]
    assert block.expand.weight.shape == (arch.blocks[0].width, 16, 1, 1)
    assert block.dw.weight.shape[-1] == arch.blocks[0].kernel


def test_child_state_dict_loads_with_weights_only(space, images):
    arch = space.random_arch(1)
    child = randomize(ChildNet(space, arch)).eval()
    buf = io.BytesIO()
    torch.save(child.state_dict(), buf)
    buf.seek(0)
    other = ChildNet(space, arch).eval()
    other.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(other(images), child(images))


def test_child_trains(space, images):
    child = ChildNet(space, space.random_arch(2))
    loss = nn.functional.cross_entropy(child(images), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for p in child.parameters())


def test_recalibrate_bn_is_a_cumulative_average():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))
    batches = [(torch.randn(4, 2, 3, 3) + i, None) for i in range(3)]
    model.eval()
    used = recalibrate_bn(model, batches, num_batches=2)
    assert used == 2 and not model.training
    bn = model[1]
    with torch.no_grad():
        means = [model[0](x).mean((0, 2, 3)) for x, _ in batches[:2]]
    torch.testing.assert_close(bn.running_mean, (means[0] + means[1]) / 2)
    assert bn.momentum == 0.1
    with pytest.raises(ValueError):
        recalibrate_bn(model, batches, 0)


def test_recalibrate_supernet_in_fixed_mode(supernet, space, images):
    arch = space.random_arch(3)
    supernet.set_mode("fixed", arch)
    recalibrate_bn(supernet, [images, images], num_batches=5)
    block = next(b for b, c in zip(supernet.blocks, arch.blocks) if not c.skipped)
    width = arch.blocks[block.spec.index].width
    assert block.bn2.running_mean[:width].abs().sum() > 0
    assert block.bn2.running_mean[width:].eq(0).all()  # the unused channels were reset
