"""SuperNet: parameters, modes, relaxations, gradients, derive, summary."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dnas.space import SKIP, Architecture, BlockChoice, ConvBits, LayerKey, SpaceError
from dnas.supernet import RelaxedArch, SearchableBlock, SuperNet


def test_forward_shape_and_channels_last(supernet, images, space):
    logits = supernet(images)
    assert logits.shape == (4, space.num_classes)
    assert torch.isfinite(logits).all()


def test_parameter_partition_is_complete_and_disjoint(supernet):
    arch = {id(p) for p in supernet.arch_parameters()}
    weights = {id(p) for p in supernet.weight_parameters()}
    every = {id(p) for p in supernet.parameters()}
    assert arch and weights
    assert not arch & weights
    assert arch | weights == every
    names = [n for n, p in supernet.named_parameters() if id(p) in arch]
    assert all("arch_" in n for n in names)
    assert not any("arch_" in n for n, p in supernet.named_parameters() if id(p) in weights)
    # per block: α (kernel), θ (width), β_w and β_a for each of its three convs
    assert len(names) == 6 * (2 + 3 * 2)


@pytest.mark.parametrize("hard", [False, True])
def test_task_loss_reaches_every_arch_parameter(supernet, images, hard):
    """Soft samples: every step. Hard samples: a block whose draw is "skip" is the identity, so
    its width and bits get no gradient that step; over a few steps every parameter gets one."""
    supernet.hard = hard
    torch.manual_seed(0)
    for _ in range(1 if not hard else 4):
        loss = F.cross_entropy(supernet(images), torch.tensor([0, 1, 2, 3]))
        loss.backward()
    for name, p in supernet.named_parameters():
        assert p.grad is not None, name
        if "arch_" in name:
            assert p.grad.abs().sum() > 0, name


def test_relaxed_gradients_and_keys(supernet, space):
    relaxed = supernet.relaxed()
    assert isinstance(relaxed, RelaxedArch)
    assert set(relaxed.kernel_probs) == set(range(space.num_blocks))
    assert set(relaxed.bit_index) == {c.key for c in space.costed_layers()}
    for b in space.blocks:
        probs = relaxed.kernel_probs[b.index]
        assert probs.shape == (len(space.kernel_choices(b.index)),)
        torch.testing.assert_close(probs.sum(), torch.tensor(1.0))
        assert relaxed.width_index[b.index].dim() == 0
        assert float(relaxed.width_index[b.index].detach()) == len(b.widths) - 1
    for bw, ba in relaxed.bit_index.values():
        assert bw.dim() == 0 and ba.dim() == 0
    assert float(relaxed.bit_index[LayerKey("stem")][0]) == 0.0  # a single (fixed) choice

    probs_term = sum((p * torch.arange(len(p))).sum() for p in relaxed.kernel_probs.values())
    total = probs_term + sum(relaxed.width_index.values())
    total = total + sum(bw + ba for bw, ba in relaxed.bit_index.values())
    total.backward()
    for name, p in supernet.named_parameters():
        if "arch_" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def _hand_set(supernet: SuperNet) -> Architecture:
    """Set every arch parameter by hand; return the architecture derive() must give."""
    space = supernet.space
    blocks = []
    with torch.no_grad():
        for block in supernet.blocks:
            spec = block.spec
            i = spec.index
            choices = spec.kernel_choices
            k = len(choices) - 1 if spec.can_skip and i == 3 else i % len(spec.kernels)
            logits = torch.zeros(len(choices))
            logits[k] = 2.0
            block.kernel.arch_logits.copy_(logits)
            theta = 1.4 if i % 2 else 2.6  # nearest: 1 and 3
            block.width.arch_index.fill_(theta)
            bits = {}
            for j, (role, layer) in enumerate(block.convs().items()):
                layer.wq.bits.arch_index.fill_(j + 0.2)  # nearest j
                layer.aq.bits.arch_index.fill_(5.7 - j)  # nearest 6 − j
                bits[role] = ConvBits(spec.bits.w_bits[j], spec.bits.a_bits[6 - j])
            blocks.append(
                BlockChoice(
                    choices[k],
                    spec.widths[1 if i % 2 else 3],
                    bits.get("expand"),
                    bits["dw"],
                    bits["project"],
                )
            )
    eight = ConvBits(8, 8)
    return Architecture(
        tuple(blocks), eight, eight, eight, space=space.name, space_fingerprint=space.fingerprint()
    )


def test_derive_returns_the_hand_set_architecture(supernet, space):
    want = _hand_set(supernet)
    got = supernet.derive()
    assert got == want
    assert got.blocks[3].kernel == SKIP
    space.validate_arch(got)
    assert got.space == "fmnist_mbv2" and got.space_fingerprint == space.fingerprint()


def test_argmax_mode_runs_the_derived_architecture(supernet, images):
    _hand_set(supernet)
    supernet.eval()
    supernet.set_mode("argmax")
    a = supernet(images)
    assert supernet.last_arch() == supernet.derive()
    supernet.set_mode("fixed", supernet.derive())
    torch.testing.assert_close(supernet(images), a)


def test_one_hot_skip_block_is_identity(supernet):
    block = supernet.blocks[1]
    assert isinstance(block, SearchableBlock) and block.spec.can_skip
    with torch.no_grad():
        block.kernel.arch_logits.copy_(torch.tensor([0.0, 0.0, 0.0, 1e4]))
    x = torch.randn(2, 24, 14, 14)
    assert torch.equal(block(x), x)
    block.set_mode("argmax")
    assert torch.equal(block(x), x)


def test_uniform_mode_draws_different_architectures(supernet, images, space):
    supernet.set_mode("uniform")
    torch.manual_seed(0)
    archs = []
    for _ in range(4):
        supernet(images)
        archs.append(supernet.last_arch())
        space.validate_arch(archs[-1])
    assert len(set(archs)) == 4
    assert supernet.arch_parameters()[0].grad is None


def test_set_mode_checks(supernet, space):
    with pytest.raises(ValueError, match="needs an architecture"):
        supernet.set_mode("fixed")
    with pytest.raises(ValueError, match="unknown sampling mode"):
        supernet.set_mode("evolve")
    bad = space.largest_arch()
    bad = Architecture(bad.blocks[:-1], bad.stem, bad.last, bad.classifier)
    with pytest.raises(SpaceError):
        supernet.set_mode("fixed", bad)
    supernet.set_mode("fixed", space.smallest_arch())
    assert supernet.mode == "fixed"


def test_tau_and_hard_propagate(supernet):
    supernet.tau = 0.5
    supernet.hard = False
    for block in supernet.blocks:
        assert block.kernel.tau == 0.5 and block.kernel.hard is False
    with pytest.raises(ValueError, match="positive"):
        supernet.tau = 0.0


def test_clamp_arch(supernet):
    block = supernet.blocks[0]
    with torch.no_grad():
        block.width.arch_index.fill_(99.0)
        block.dw.wq.bits.arch_index.fill_(-3.0)
    supernet.clamp_arch_()
    assert block.width.arch_index.item() == len(block.spec.widths) - 1
    assert block.dw.wq.bits.arch_index.item() == 0.0


def test_summary_and_entropy(supernet, space):
    text = supernet.summary()
    assert len(text.splitlines()) == space.num_blocks + 3
    assert "skip:0.25" in text and "stem 8.0/8.0" in text
    want = (3 * math.log(3) + 3 * math.log(4)) / 6
    assert float(supernet.entropy().detach()) == pytest.approx(want)


def test_relaxation_is_exact_at_one_hot_and_integer_points(supernet, space, images):
    """Gumbel mode at one-hot kernels and integer θ, β runs exactly the derived architecture."""
    arch = _hand_set(supernet)
    with torch.no_grad():
        for block in supernet.blocks:
            block.kernel.arch_logits.mul_(1e4)  # the Gumbel draw is then the argmax
            for op in [block.width] + [
                q.bits for c in block.convs().values() for q in (c.wq, c.aq)
            ]:
                op.arch_index.round_()
    assert supernet.derive() == arch
    supernet.eval()
    relaxed = supernet(images)
    supernet.set_mode("fixed", arch)
    torch.testing.assert_close(relaxed, supernet(images), atol=1e-5, rtol=1e-4)


def _force_kernel(supernet, index: int | None) -> None:
    """Make every kernel choice draw option ``index`` (``None``: skip) with certainty."""
    with torch.no_grad():
        for block in supernet.searchable_blocks():
            if block.kernel.searchable:
                logits = block.kernel.arch_logits
                logits.fill_(-1e4)
                logits[-1 if index is None else index] = 1e4


def _skippable(supernet):
    return [b for b in supernet.searchable_blocks() if b.kernel.has_skip]


def test_drawn_skip_does_not_move_running_statistics(supernet, images):
    """A drawn skip runs its branch only for α_skip's gradient: its BNs keep their statistics."""
    supernet.set_mode("gumbel")
    supernet.train()
    _force_kernel(supernet, None)
    blocks = _skippable(supernet)
    assert blocks
    before = [{n: b.clone() for n, b in blk.named_buffers() if "running" in n} for blk in blocks]
    supernet(images).sum().backward()
    for blk, old in zip(blocks, before):
        for n, b in blk.named_buffers():
            if "running" in n:
                torch.testing.assert_close(b, old[n], msg=n)
        assert blk.kernel.arch_logits.grad is not None  # the branch still gave α its gradient


def test_drawn_kernel_moves_running_statistics(supernet, images):
    supernet.set_mode("gumbel")
    supernet.train()
    _force_kernel(supernet, 0)
    blk = _skippable(supernet)[0]
    before = blk.bn2.running_mean.clone()
    supernet(images)
    assert not torch.allclose(blk.bn2.running_mean, before)
