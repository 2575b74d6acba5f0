"""Uniform fake quantizers, each one ``torch.autograd.Function`` (PACT; FracBits, arXiv 2007.02017).

Weights are quantized symmetrically with a per-output-channel max-abs scale; activations with a
learnable clip α, unsigned (PACT, Choi et al. 2018) for inputs that come from a ReLU, signed
(symmetric) where they can be negative. Rounding uses the straight-through estimator (STE).

The fractional versions take a continuous index β into an ordered list of bit-widths and return
``(1 − f)·Q_{b⌊β⌋}(x) + f·Q_{b⌊β⌋+1}(x)`` with ``f = β − ⌊β⌋`` (FracBits), so β gets the gradient
``Σ grad · (Q_hi − Q_lo)``. At ``β = n − 1`` the pair is ``(n − 2, n − 1)`` with ``f = 1`` (the
convention of the differentiable cost), so β still has a gradient at the top of its range. At an
integer β the result equals the fixed-bit quantizer bit for bit (the interpolation is exact at both
ends, and both paths share the same arithmetic).

Each quantizer is a single autograd node (no chain of clamp/round/mul nodes with their own saved
tensors): on a CPU this roughly halves the step time of a quantized MobileNetV2 (docs/DESIGN.md).
Clips and the bit index are read as Python numbers once per call (fast scalar kernels on a CPU;
one host synchronisation per quantizer on a GPU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd import Function

_EPS = 1e-8
MIN_CLIP = 1e-3
"""Clips are used as at least this: a clip pushed to 0 or below would divide by zero."""


def weight_levels(bits: int) -> int:
    """Positive levels of a symmetric ``bits``-bit quantizer: ``2^(bits−1) − 1`` (needs ≥ 2 bits)."""
    if bits < 2:
        raise ValueError(f"symmetric (signed) quantization needs at least 2 bits, got {bits}")
    return 2 ** (bits - 1) - 1


def act_levels(bits: int, signed: bool) -> int:
    """Positive levels of an activation quantizer: ``2^bits − 1`` unsigned, ``2^(bits−1) − 1`` signed."""
    if signed:
        return weight_levels(bits)
    if bits < 1:
        raise ValueError(f"quantization needs at least 1 bit, got {bits}")
    return 2**bits - 1


def levels_tensor(
    bits: Sequence[int], signed: bool, weight: bool = False, device: torch.device | None = None
) -> Tensor:
    """Float tensor ``[len(bits)]`` of the positive levels of each bit-width (see ``*_levels``)."""
    n = [weight_levels(b) if weight else act_levels(b, signed) for b in bits]
    return torch.tensor(n, dtype=torch.float32, device=device)


# ----------------------------------------------------------------------------------- kernels
# The forward arithmetic, shared by the fixed and fractional functions so they agree exactly.
# Clips and level counts are used as Python numbers: elementwise kernels with scalar operands
# are several times faster on a CPU than with 0-dim tensor operands (one host read per call).


def _wq(w: Tensor, levels: float) -> Tensor:
    """Symmetric per-output-channel quantization of ``w`` ``[O, ...]`` to ±``levels`` steps."""
    amax = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp_min_(_EPS)
    scale = amax / levels
    return (w / scale).round_().mul_(scale)


def _round_to(y: Tensor, clip: float, levels: float, inplace: bool) -> Tensor:
    """Round an already clipped ``y`` to multiples of ``clip / levels``."""
    scale = clip / levels
    return (y.div_(scale) if inplace else y / scale).round_().mul_(scale)


def _clip(x: Tensor, clip: float, signed: bool) -> Tensor:
    return x.clamp(-clip if signed else 0.0, clip)


def _split(beta: Tensor, levels: Tensor) -> tuple[float, float, float, bool]:
    """Levels of the two neighbouring bit-widths of β, the fraction ``f`` and whether β is in range.

    β is clamped to ``[0, n − 1]`` first, as the expected cost clamps it: outside its range the
    quantizer is the end bit-width's (no extrapolation) and β gets no gradient (as ``clamp``'s).
    """
    n = levels.numel()
    raw = float(beta)
    b = min(max(raw, 0.0), float(n - 1))
    lo = min(max(math.floor(b), 0), n - 2)
    return float(levels[lo]), float(levels[lo + 1]), b - lo, 0.0 <= raw <= n - 1


def _mix(q_lo: Tensor, q_hi: Tensor, diff: Tensor, f: float) -> Tensor:
    """``(1 − f)·q_lo + f·q_hi`` in place (overwrites one input), exact at ``f`` = 0 and 1.

    The two-sided form of ``torch.lerp``: ``q_lo + f·diff`` below ½, ``q_hi − (1 − f)·diff`` from
    ½, so the result is bit-exact at the ends.
    """
    return q_lo.add_(diff, alpha=f) if f < 0.5 else q_hi.sub_(diff, alpha=1.0 - f)


def _dense(t: Tensor) -> bool:
    return t.is_contiguous() or (
        t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)
    )


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """``(a * b).sum()`` without the temporary when both share one dense layout (0-dim)."""
    if a.shape == b.shape and a.stride() == b.stride() and _dense(a) and _dense(b):
        return torch.dot(a.as_strided((a.numel(),), (1,)), b.as_strided((b.numel(),), (1,)))
    return (a * b).sum()


def _act_grads(
    needs: tuple[bool, ...], g: Tensor, x: Tensor, clip: float, signed: bool
) -> tuple[Tensor | None, Tensor | None]:
    """STE gradient to ``x`` (pass inside the clip range) and PACT gradient to the clip α."""
    lo = -clip if signed else 0.0
    # Fused single-pass kernels: g where lo < x < clip, and g where x > clip.
    gx = torch.ops.aten.hardtanh_backward(g, x, lo, clip)
    gclip = None
    if needs[1]:
        # ∂Q/∂α = 1 above the range (PACT), −1 below it for the symmetric quantizer.
        gclip = torch.ops.aten.threshold_backward(g, x, clip).sum()
        if signed:
            gclip = gclip - torch.ops.aten.threshold_backward(g, x.neg(), clip).sum()
    return (gx if needs[0] else None), gclip


def _beta_grad(ctx, g: Tensor, diff: Tensor, index: int) -> Tensor | None:
    """∂L/∂β = ⟨g, Q_hi − Q_lo⟩ inside β's range, 0 outside (where the forward clamps β)."""
    if not ctx.needs_input_grad[index]:
        return None
    if not ctx.in_range:
        return torch.zeros((), dtype=g.dtype, device=g.device)
    return _dot(g, diff)


# --------------------------------------------------------------------------------- functions
class _WeightQuant(Function):
    @staticmethod
    def forward(ctx, w: Tensor, levels: float) -> Tensor:  # type: ignore[override]
        return _wq(w, levels)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return g, None


class _FracWeightQuant(Function):
    @staticmethod
    def forward(ctx, w: Tensor, beta: Tensor, levels: Tensor) -> Tensor:  # type: ignore[override]
        n_lo, n_hi, f, ctx.in_range = _split(beta, levels)
        q_lo, q_hi = _wq(w, n_lo), _wq(w, n_hi)
        diff = q_hi - q_lo
        ctx.save_for_backward(diff)
        return _mix(q_lo, q_hi, diff, f)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, Tensor | None, None]:  # type: ignore[override]
        (diff,) = ctx.saved_tensors
        gbeta = _beta_grad(ctx, g, diff, 1)
        return g, gbeta, None


class _ActQuant(Function):
    @staticmethod
    def forward(ctx, x: Tensor, clip: Tensor, levels: float, signed: bool) -> Tensor:  # type: ignore[override]
        c = max(float(clip), MIN_CLIP)
        ctx.signed, ctx.clip = signed, c
        ctx.save_for_backward(x)
        return _round_to(_clip(x, c, signed), c, levels, inplace=True)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        gx, gclip = _act_grads(ctx.needs_input_grad, g, x, ctx.clip, ctx.signed)
        return gx, gclip, None, None


class _FracActQuant(Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: Tensor, clip: Tensor, beta: Tensor, levels: Tensor, signed: bool
    ) -> Tensor:
        n_lo, n_hi, f, ctx.in_range = _split(beta, levels)
        c = max(float(clip), MIN_CLIP)
        y = _clip(x, c, signed)
        q_lo = _round_to(y, c, n_lo, inplace=False)
        q_hi = _round_to(y, c, n_hi, inplace=True)
        diff = q_hi - q_lo
        ctx.signed, ctx.clip = signed, c
        ctx.save_for_backward(x, diff)
        return _mix(q_lo, q_hi, diff, f)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx, g: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None, None]:
        x, diff = ctx.saved_tensors
        gx, gclip = _act_grads(ctx.needs_input_grad, g, x, ctx.clip, ctx.signed)
        gbeta = _beta_grad(ctx, g, diff, 2)
        return gx, gclip, gbeta, None, None


# ---------------------------------------------------------------------------- functional API
def _levels_like(bits: Sequence[int] | Tensor, ref: Tensor, signed: bool, weight: bool) -> Tensor:
    if isinstance(bits, Tensor):
        return bits
    return levels_tensor(bits, signed, weight=weight, device=ref.device)


def quantize_weight(w: Tensor, bits: int) -> Tensor:
    """Symmetric ``bits``-bit fake quantization, per-output-channel max-abs scale, STE.

    Args:
        w: weight ``[O, ...]`` (conv ``[O, I/groups, k, k]`` or linear ``[O, I]``).
        bits: bit-width (≥ 2).

    Returns:
        The quantized weight, same shape; its gradient passes ``w``'s unchanged.
    """
    return _WeightQuant.apply(w, float(weight_levels(bits)))


def quantize_weight_frac(w: Tensor, beta: Tensor, bits: Sequence[int] | Tensor) -> Tensor:
    """Fractional-bit weight quantization (FracBits): interpolate the two nearest bit-widths.

    Args:
        w: weight ``[O, ...]``.
        beta: 0-dim continuous index into ``bits``, in ``[0, len(bits) − 1]``.
        bits: the ordered bit-widths (≥ 2 of them), or their ``levels_tensor(..., weight=True)``.

    Returns:
        ``(1 − f)·Q_lo(w) + f·Q_hi(w)``, same shape as ``w``; gradients reach ``w`` (STE) and β.
    """
    return _FracWeightQuant.apply(w, beta, _levels_like(bits, w, True, True))


def quantize_act(x: Tensor, clip: Tensor, bits: int, signed: bool = False) -> Tensor:
    """Activation fake quantization with a learnable clip α (PACT when unsigned).

    Args:
        x: activation of any shape, e.g. ``[B, C, H, W]``.
        clip: 0-dim clip α > 0; the range is ``[0, α]`` (unsigned) or ``[−α, α]`` (signed).
        bits: bit-width.
        signed: symmetric quantizer for inputs that can be negative. An unsigned one acts as a
            ReLU (it clips at 0).

    Returns:
        Quantized ``x``, same shape and memory format. Gradient: STE inside the range, 0 outside;
        α gets ``Σ grad`` over the elements above α (minus the sum below −α when signed).
    """
    return _ActQuant.apply(x, clip, float(act_levels(bits, signed)), signed)


def quantize_act_frac(
    x: Tensor,
    clip: Tensor,
    beta: Tensor,
    bits: Sequence[int] | Tensor,
    signed: bool = False,
) -> Tensor:
    """Fractional-bit activation quantization (FracBits on top of ``quantize_act``).

    Args:
        x: activation of any shape.
        clip: 0-dim clip α.
        beta: 0-dim continuous index into ``bits``, in ``[0, len(bits) − 1]``.
        bits: the ordered bit-widths (≥ 2 of them), or their ``levels_tensor(..., signed)``.
        signed: symmetric quantizer (see ``quantize_act``).

    Returns:
        ``(1 − f)·Q_lo(x) + f·Q_hi(x)``; gradients reach ``x``, α and β.
    """
    return _FracActQuant.apply(x, clip, beta, _levels_like(bits, x, signed, False), signed)
