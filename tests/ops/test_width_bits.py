"""Fractional width mask, bit choices, quantizer modules, sliced convs and BN."""

from __future__ import annotations

import pytest
import torch

from dnas.ops import (
    ActQuantizer,
    BitChoice,
    FractionalWidth,
    QuantConv2d,
    SlicedBatchNorm2d,
    WeightQuantizer,
)
from dnas.quant import quantize_act, quantize_weight


def _set(op, value: float) -> None:
    with torch.no_grad():
        op.arch_index.fill_(value)


def test_width_mask_at_fractional_index():
    op = FractionalWidth((8, 16, 24))
    assert op.mask().tolist() == [1.0] * 24  # starts at the largest width
    _set(op, 1.25)
    m = op.mask()
    assert m[:16].eq(1).all() and torch.allclose(m[16:24], torch.tensor(0.25))
    _set(op, 0.5)
    m = op.mask()
    assert m[:8].eq(1).all() and torch.allclose(m[8:16], torch.tensor(0.5)) and m[16:].eq(0).all()
    _set(op, 0.0)
    assert op.mask().tolist() == [1.0] * 8 + [0.0] * 16
    _set(op, 1.0)
    assert op.mask().tolist() == [1.0] * 16 + [0.0] * 8


def test_width_mask_gradient_and_clamp():
    op = FractionalWidth((8, 16, 24))
    _set(op, 0.3)
    op.mask().sum().backward()
    assert float(op.arch_index.grad) == pytest.approx(8.0)  # channels in the partial band
    _set(op, 7.0)
    op.clamp_()
    assert op.arch_index.item() == 2.0
    _set(op, -1.0)
    op.clamp_()
    assert op.arch_index.item() == 0.0


def test_width_discrete_modes():
    op = FractionalWidth((8, 16, 24))
    _set(op, 1.4)
    op.set_mode("argmax")
    assert op.width() == 16
    _set(op, 1.5)
    assert op.width() == 24
    op.set_mode("fixed", 0)
    assert op.width() == 8
    op.set_mode("uniform")
    torch.manual_seed(0)
    assert {op.width() for _ in range(40)} == {8, 16, 24}
    single = FractionalWidth((32,))
    assert not list(single.parameters()) and single.mask().tolist() == [1.0] * 32
    assert single.width() == 32  # gumbel mode: a single option is still an index


def test_bit_choice():
    op = BitChoice((2, 4, 8))
    assert op.arch_index.item() == 2.0 and op.expected_bits() == 8.0
    _set(op, 0.5)
    assert op.expected_bits() == 3.0 and op.argmax() == 1
    with pytest.raises(ValueError, match="increasing"):
        BitChoice((4, 2))


def test_quantizer_modules_follow_the_mode():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 5)
    wq, aq = WeightQuantizer((2, 4, 8)), ActQuantizer((2, 4, 8), signed=True, clip=2.0)
    _set(wq.bits, 1.0)
    _set(aq.bits, 1.0)
    assert torch.equal(wq(x), quantize_weight(x, 4))  # gumbel at integer β = fixed bits
    assert torch.equal(aq(x), quantize_act(x, aq.clip, 4, signed=True))
    _set(wq.bits, 1.5)
    assert not torch.equal(wq(x), quantize_weight(x, 4))
    wq.bits.set_mode("fixed", 2)
    assert torch.equal(wq(x), quantize_weight(x, 8))
    assert [n for n, _ in aq.named_parameters()] == ["clip", "bits.arch_index"]


def test_masked_conv_equals_sliced_conv():
    """Masking input channels before weight quantization = slicing them (per-channel scale)."""
    torch.manual_seed(0)
    conv = QuantConv2d(12, 5, 1, 1, w_bits=(3,), a_bits=(4,))
    x = torch.randn(2, 12, 4, 4).relu()
    mask = torch.tensor([1.0] * 7 + [0.0] * 5)
    torch.testing.assert_close(conv(x, in_mask=mask), conv(x[:, :7]), atol=1e-5, rtol=1e-5)
    assert conv(x, out_channels=3).shape == (2, 3, 4, 4)


def test_sliced_batch_norm():
    torch.manual_seed(0)
    bn = SlicedBatchNorm2d(6)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
    ref = torch.nn.BatchNorm2d(4)
    ref.load_state_dict({k: v[:4] if v.dim() else v for k, v in bn.state_dict().items()})
    x = torch.randn(8, 4, 3, 3)
    torch.testing.assert_close(bn(x), ref(x))
    torch.testing.assert_close(bn.running_mean[:4], ref.running_mean)
    assert bn.running_mean[4:].eq(0).all()
    bn.eval()
    ref.eval()
    torch.testing.assert_close(bn(x), ref(x))
