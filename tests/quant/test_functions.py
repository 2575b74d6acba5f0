"""Quantizers: fixed vs fractional bit-widths, STE and PACT gradients, signedness, layouts."""

from __future__ import annotations

import pytest
import torch

from dnas.quant import (
    act_levels,
    quantize_act,
    quantize_act_frac,
    quantize_weight,
    quantize_weight_frac,
    weight_levels,
)

BITS = (2, 3, 4, 5, 6, 7, 8)


@pytest.fixture
def x() -> torch.Tensor:
    torch.manual_seed(0)
    return 2.0 * torch.randn(4, 6, 5, 5)


def test_levels():
    assert [weight_levels(b) for b in (2, 4, 8)] == [1, 7, 127]
    assert [act_levels(b, False) for b in (1, 2, 8)] == [1, 3, 255]
    assert act_levels(8, True) == 127
    with pytest.raises(ValueError, match="at least 2 bits"):
        weight_levels(1)


@pytest.mark.parametrize("i", range(len(BITS)))
def test_fractional_equals_fixed_at_integer_index(x, i):
    beta = torch.tensor(float(i))
    clip = torch.tensor(3.0)
    assert torch.equal(quantize_weight_frac(x, beta, BITS), quantize_weight(x, BITS[i]))
    for signed in (False, True):
        frac = quantize_act_frac(x, clip, beta, BITS, signed)
        assert torch.equal(frac, quantize_act(x, clip, BITS[i], signed))


@pytest.mark.parametrize("beta", [0.25, 2.5, 4.9, 5.999])
def test_fractional_interpolates_between_neighbours(x, beta):
    i, f = int(beta), beta - int(beta)
    clip = torch.tensor(2.5)
    got = quantize_act_frac(x, clip, torch.tensor(beta), BITS)
    want = (1 - f) * quantize_act(x, clip, BITS[i]) + f * quantize_act(x, clip, BITS[i + 1])
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    got_w = quantize_weight_frac(x, torch.tensor(beta), BITS)
    want_w = (1 - f) * quantize_weight(x, BITS[i]) + f * quantize_weight(x, BITS[i + 1])
    torch.testing.assert_close(got_w, want_w, atol=1e-6, rtol=0)


def test_weight_quantizer_levels_and_per_channel_scale(x):
    q = quantize_weight(x, 3)
    for o in range(x.shape[0]):
        amax = x[o].abs().max()
        # the channel's largest magnitude is a level, every value a multiple of amax / 3
        assert torch.isclose(q[o].abs().max(), amax)
        codes = q[o] / (amax / 3)
        torch.testing.assert_close(codes, codes.round(), atol=1e-5, rtol=0)
        assert codes.unique().numel() <= 7


def test_weight_ste_passes_gradient_unchanged(x):
    w = x.clone().requires_grad_()
    g = torch.randn_like(w)
    quantize_weight(w, 4).backward(g)
    assert torch.equal(w.grad, g)


def test_unsigned_act_is_pact(x):
    xr = x.clone().requires_grad_()
    clip = torch.tensor(1.5, requires_grad=True)
    q = quantize_act(xr, clip, 2)
    assert q.min() == 0 and float(q.detach().max()) == pytest.approx(1.5)
    assert q.unique().numel() <= 4  # 2 bits
    g = torch.randn_like(x)
    q.backward(g)
    inside = (x > 0) & (x < 1.5)
    torch.testing.assert_close(xr.grad, torch.where(inside, g, 0.0))
    # PACT: dQ/dα = 1 where x ≥ α
    torch.testing.assert_close(clip.grad, g[x > 1.5].sum())


def test_signed_act_keeps_negatives(x):
    xr = x.clone().requires_grad_()
    clip = torch.tensor(2.0, requires_grad=True)
    q = quantize_act(xr, clip, 4, signed=True)
    assert float(q.detach().min()) == pytest.approx(-2.0) and float(
        q.detach().max()
    ) == pytest.approx(2.0)
    assert (q < 0).sum() > 0 and q.unique().numel() <= 15
    torch.testing.assert_close(q.detach(), x.clamp(-2, 2), atol=1 / 7 + 1e-6, rtol=0)
    g = torch.randn_like(x)
    q.backward(g)
    inside = (x > -2) & (x < 2)
    torch.testing.assert_close(xr.grad, torch.where(inside, g, 0.0))
    torch.testing.assert_close(clip.grad, g[x > 2].sum() - g[x < -2].sum())
    # an unsigned quantizer would have acted as a ReLU
    assert quantize_act(x, clip, 4).min() == 0


@pytest.mark.parametrize("signed", [False, True])
def test_fractional_gradients(x, signed):
    xr = x.clone().requires_grad_()
    clip = torch.tensor(1.7, requires_grad=True)
    beta = torch.tensor(2.4, requires_grad=True)
    g = torch.randn_like(x)
    quantize_act_frac(xr, clip, beta, BITS, signed).backward(g)
    q4, q5 = (quantize_act(x, torch.tensor(1.7), b, signed) for b in (4, 5))
    torch.testing.assert_close(beta.grad, (g * (q5 - q4)).sum())
    # the STE and the clip gradient do not depend on the bit-width
    xf = x.clone().requires_grad_()
    clip_f = torch.tensor(1.7, requires_grad=True)
    quantize_act(xf, clip_f, 4, signed).backward(g)
    torch.testing.assert_close(xr.grad, xf.grad)
    torch.testing.assert_close(clip.grad, clip_f.grad)

    w = x.clone().requires_grad_()
    beta_w = torch.tensor(0.5, requires_grad=True)
    quantize_weight_frac(w, beta_w, BITS).backward(g)
    torch.testing.assert_close(
        beta_w.grad, (g * (quantize_weight(x, 3) - quantize_weight(x, 2))).sum()
    )
    assert torch.equal(w.grad, g)


def test_beta_has_a_gradient_at_the_top_of_its_range(x):
    beta = torch.tensor(float(len(BITS) - 1), requires_grad=True)
    q = quantize_act_frac(x, torch.tensor(3.0), beta, BITS)
    assert torch.equal(q, quantize_act(x, torch.tensor(3.0), 8))
    q.sum().backward()
    assert beta.grad != 0


def test_channels_last_is_kept_and_beta_gradient_independent_of_layout(x):
    cl = x.contiguous(memory_format=torch.channels_last)
    clip = torch.tensor(2.0)
    g = torch.randn_like(x)
    grads = []
    for inp, grad in ((x, g), (cl, g), (cl, g.contiguous(memory_format=torch.channels_last))):
        beta = torch.tensor(3.3, requires_grad=True)
        q = quantize_act_frac(inp, clip, beta, BITS)
        assert q.stride() == inp.stride()
        q.backward(grad)
        grads.append(beta.grad)
    torch.testing.assert_close(grads[0], grads[1])
    torch.testing.assert_close(grads[0], grads[2])


def test_clip_pushed_to_zero_does_not_divide_by_zero(x):
    q = quantize_act(x, torch.tensor(-1.0), 4)
    assert torch.isfinite(q).all()


@pytest.mark.parametrize("beta, end", [(6.2, -1), (7.5, -1), (-0.3, 0)])
def test_fractional_clamps_outside_its_range(x, beta, end):
    """Outside [0, n − 1] the quantizer is the end bit-width's (no extrapolation), like the
    expected cost, and β gets no gradient there (as through a clamp)."""
    bits = (2, 3, 4, 5, 6, 7, 8)
    b = torch.tensor(beta, requires_grad=True)
    w = x.clone().requires_grad_()
    q = quantize_weight_frac(w, b, bits)
    torch.testing.assert_close(q, quantize_weight(x, bits[end]), rtol=0, atol=0)
    clip = torch.tensor(2.0, requires_grad=True)
    qa = quantize_act_frac(w, clip, b, bits, signed=True)
    torch.testing.assert_close(qa, quantize_act(x, clip, bits[end], signed=True), rtol=0, atol=0)
    (q.sum() + qa.sum()).backward()
    assert b.grad is not None and float(b.grad) == 0.0
