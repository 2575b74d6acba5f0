"""Gumbel kernel choice and the mixed-kernel depthwise conv."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dnas.ops import (
    GumbelKernel,
    QuantDepthwiseConv2d,
    crop_masks,
    gumbel_softmax,
    mix_kernels,
    mix_separate_kernels,
)
from dnas.quant import quantize_act, quantize_weight


def test_crop_masks():
    m = crop_masks((3, 5, 7))
    assert m.shape == (3, 7, 7)
    assert [int(x.sum()) for x in m] == [9, 25, 49]
    assert m[0, 2:5, 2:5].all() and m[0].sum() == 9


def test_mix_kernels_is_weighted_sum_of_padded_crops():
    torch.manual_seed(0)
    w = torch.randn(4, 1, 7, 7)
    g = torch.tensor([0.2, 0.3, 0.5])
    want = torch.zeros_like(w)
    for gi, k in zip(g, (3, 5, 7)):
        o = (7 - k) // 2
        want[:, :, o : o + k, o : o + k] += gi * w[:, :, o : o + k, o : o + k]
    torch.testing.assert_close(mix_kernels(w, g, crop_masks((3, 5, 7))), want)


def test_mix_separate_kernels_is_weighted_sum_of_padded_own_weights():
    torch.manual_seed(0)
    w = torch.randn(3, 4, 1, 7, 7)
    g = torch.tensor([0.2, 0.3, 0.5])
    want = torch.zeros(4, 1, 7, 7)
    for i, (gi, k) in enumerate(zip(g, (3, 5, 7))):
        o = (7 - k) // 2
        want[:, :, o : o + k, o : o + k] += gi * w[i, :, :, o : o + k, o : o + k]
    torch.testing.assert_close(mix_separate_kernels(w, g, crop_masks((3, 5, 7))), want)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_separate_kernels_one_hot_equals_own_weight_and_trains_only_it(index):
    torch.manual_seed(index)
    conv = QuantDepthwiseConv2d(8, (3, 5, 7), 2, (4,), (5,), kernel_weights="separate")
    assert conv.weight.shape == (3, 8, 1, 7, 7)
    x = torch.randn(2, 8, 9, 9).relu()
    k = (3, 5, 7)[index]
    o = (7 - k) // 2
    own = conv.weight[index, :, :, o : o + k, o : o + k]
    assert conv.weight_of(k).shape == (8, 1, k, k)
    torch.testing.assert_close(conv.weight_of(k), own)
    # zero outside each kernel's window, initialised for its own fan-out
    assert (conv.weight[0, :, :, :2].abs().sum() == 0) and conv.weight[0].abs().sum() > 0
    assert conv.weight_of(3).std() > 1.5 * conv.weight_of(7).std()
    want = F.conv2d(
        quantize_act(x, conv.aq.clip, 5), quantize_weight(own, 4), None, 2, k // 2, 1, 8
    )
    g = F.one_hot(torch.tensor(index), 3).float()
    out = conv(x, kernel_weights=g)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(conv(x, kernel=k), want, atol=1e-5, rtol=1e-5)
    out.sum().backward()
    grad = conv.weight.grad
    assert grad is not None
    others = [i for i in range(3) if i != index]
    assert grad[others].abs().sum() == 0 and grad[index].abs().sum() > 0


def test_kernel_weights_setting_is_checked():
    with pytest.raises(ValueError, match="kernel_weights='split' is not one of"):
        QuantDepthwiseConv2d(8, (3, 5), kernel_weights="split")
    # one kernel size: one weight whatever the setting
    assert QuantDepthwiseConv2d(8, (3,), kernel_weights="separate").weight.shape == (8, 1, 3, 3)


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_conv_with_one_hot_equals_centre_crop_conv(index, stride):
    torch.manual_seed(index)
    conv = QuantDepthwiseConv2d(8, (3, 5, 7), stride, w_bits=(4,), a_bits=(5,))
    x = torch.randn(2, 8, 9, 9).relu()
    g = F.one_hot(torch.tensor(index), 3).float()
    k = (3, 5, 7)[index]
    o = (7 - k) // 2
    crop = conv.weight[:, :, o : o + k, o : o + k]
    want = F.conv2d(
        quantize_act(x, conv.aq.clip, 5), quantize_weight(crop, 4), None, stride, k // 2, 1, 8
    )
    torch.testing.assert_close(conv(x, kernel_weights=g), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(conv(x, kernel=k), want, atol=1e-5, rtol=1e-5)
    assert conv(x, kernel=k).shape == (2, 8, math.ceil(9 / stride), math.ceil(9 / stride))


def test_depthwise_uses_leading_channels():
    conv = QuantDepthwiseConv2d(8, (3, 5), 1)
    x = torch.randn(2, 5, 6, 6)
    full = conv(torch.cat([x, torch.zeros(2, 3, 6, 6)], 1), kernel=3)
    torch.testing.assert_close(conv(x, kernel=3), full[:, :5])
    with pytest.raises(ValueError, match="not one of"):
        conv(x, kernel=7)


def test_hard_gumbel_is_one_hot_with_soft_gradient():
    torch.manual_seed(0)
    logits = torch.randn(4, requires_grad=True)
    g = gumbel_softmax(logits, tau=1.0, hard=True)
    assert sorted(g.tolist()) == [0.0, 0.0, 0.0, 1.0]
    (g * torch.arange(4.0)).sum().backward()
    assert logits.grad is not None and (logits.grad != 0).all()


def test_soft_gumbel_sums_to_one_and_follows_logits():
    torch.manual_seed(0)
    logits = torch.tensor([0.0, 0.0, 3.0])
    samples = torch.stack([gumbel_softmax(logits, 0.5, hard=False) for _ in range(2000)])
    torch.testing.assert_close(samples.sum(-1), torch.ones(2000))
    counts = torch.bincount(samples.argmax(-1), minlength=3).float() / 2000
    torch.testing.assert_close(counts, logits.softmax(-1), atol=0.04, rtol=0)


def test_gumbel_kernel_choice():
    op = GumbelKernel((3, 5, 7, "skip"))
    assert op.has_skip and op.kernels == (3, 5, 7) and op.searchable
    assert op.arch_logits.shape == (4,)
    torch.testing.assert_close(op.probs(), torch.full((4,), 0.25))
    torch.testing.assert_close(op.entropy(), torch.tensor(math.log(4)))
    with torch.no_grad():
        op.arch_logits.copy_(torch.tensor([0.0, 2.0, 1.0, 0.5]))
    assert op.argmax() == 1
    w, scale = op.relaxed_sample()
    assert w.shape == (3,) and scale is not None
    torch.testing.assert_close(w.sum(), torch.tensor(1.0))
    (w.sum() + scale).backward()
    assert op.arch_logits.grad is not None

    single = GumbelKernel((7,))
    assert not single.searchable and not list(single.parameters())
    torch.testing.assert_close(single.probs(), torch.ones(1))
    with pytest.raises(ValueError, match="skip"):
        GumbelKernel(("skip", 3))


def test_skip_drawn_gives_zero_scale_and_a_normalised_kernel_mix():
    op = GumbelKernel((3, 5, "skip"), tau=1.0)
    with torch.no_grad():
        op.arch_logits.copy_(torch.tensor([0.0, 1.0, 1e4]))
    w, scale = op.relaxed_sample()
    assert scale is not None and float(scale.detach()) == 0.0
    torch.testing.assert_close(w, torch.tensor([0.0, 1.0]).softmax(-1))


def test_discrete_modes():
    op = GumbelKernel((3, 5, 7, "skip"))
    op.set_mode("fixed", 3)
    assert op.choice() == "skip" and op.last_index == 3
    op.set_mode("argmax")
    assert op.choice() == 3
    op.set_mode("uniform")
    torch.manual_seed(0)
    assert {op.choice() for _ in range(60)} == {3, 5, 7, "skip"}
    with pytest.raises(ValueError, match="needs an index"):
        op.set_mode("fixed")
    with pytest.raises(ValueError, match="unknown sampling mode"):
        op.set_mode("random")
