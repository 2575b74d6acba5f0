"""Relaxed blocks compute only the channels the width mask reaches: same outputs, same gradients."""

from __future__ import annotations

import torch

from dnas.supernet import SuperNet


def full_width_forward(block, x):
    """The block's relaxed forward over every hidden channel (the unsliced reference)."""
    kw, scale = block.kernel.relaxed_sample()
    h = block.bn1(block.expand(x))
    h = block.bn2(block.dw(h, kernel_weights=kw))
    y = block.bn3(block.project(h, in_mask=block.width.mask()))
    y = y * scale if scale is not None else y
    return x + y if block.residual else y


def test_sliced_relaxed_block_equals_full_width(space):
    net = SuperNet(space)
    net.set_mode("gumbel")
    block = next(b for b in net.searchable_blocks() if b.residual and b.expand is not None)
    n = len(block.width.widths)
    with torch.no_grad():
        block.width.arch_index.fill_(n / 2 - 0.3)  # a fractional index in the middle
    assert block.width.active_channels() < block.width.max_width
    x = torch.randn(4, block.spec.in_channels, block.spec.input_size, block.spec.input_size)
    outs, grads = [], []
    for fn in (block.forward, lambda t: full_width_forward(block, t)):
        block.zero_grad()
        torch.manual_seed(0)  # the same Gumbel noise for both
        y = fn(x)
        (y.square().mean()).backward()
        outs.append(y.detach())
        grads.append({n: p.grad.clone() for n, p in block.named_parameters() if p.grad is not None})
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6, msg=name)
