"""The searchable inverted-residual block (MobileNetV2) and its static counterpart.

expand 1×1 → BN → ReLU → depthwise k×k → BN → ReLU → project 1×1 → BN, plus the identity residual
when the block has one. The ReLUs before a quantized conv are the unsigned PACT quantizers of that
conv's input (PACT replaces the ReLU), so they are not separate modules.

In gumbel mode (the search) the block runs at its largest width with

    y = BN(project(h; W_p ⊙ m(θ)))                  m(θ): fractional channel mask (width)
    h = BN(dw(BN(expand(x)); Σ_i w_i·crop_i(W_dw)))  w: Gumbel kernel mix (kernel; or Σ_i w_i·W_i)
    out = x + (1 − g_skip)·y                         g_skip: Gumbel weight of "skip"

so at a one-hot skip the block is exactly the identity, and every conv quantizes at its
fractional bit-widths. In the discrete modes it runs the chosen sub-block: sliced channels,
cropped kernel, fixed bits, and a skipped block returns its input untouched.
"""

from __future__ import annotations

from torch import Tensor, nn

from dnas.ops import (
    FractionalWidth,
    GumbelKernel,
    QuantConv2d,
    QuantDepthwiseConv2d,
    QuantLayer,
    SlicedBatchNorm2d,
)
from dnas.space import SKIP, BitChoices, BlockChoice, BlockSpec, ConvBits


def set_bits_mode(layer: QuantLayer, mode: str, choices: BitChoices, bits: ConvBits | None) -> None:
    """Set the mode of a layer's weight and activation bit choices (``bits`` for "fixed")."""
    w = None if bits is None else choices.w_bits.index(bits.w_bits)
    a = None if bits is None else choices.a_bits.index(bits.a_bits)
    layer.wq.bits.set_mode(mode, w)
    layer.aq.bits.set_mode(mode, a)


def _one_hot(kernel_weights: Tensor, scale: Tensor | None) -> bool:
    """Whether a relaxed sample picks exactly one kernel (and not skip) in its forward value."""
    if scale is not None and float(scale.detach()) != 1.0:
        return False
    w = kernel_weights.detach()
    return bool(((w == 0) | (w == 1)).all()) and float(w.sum()) == 1.0


class SearchableBlock(nn.Module):
    """An inverted-residual block with searchable kernel (or skip), hidden width and bits.

    Args:
        spec: the block's spec in the search space.
        signed_input: whether the block input can be negative (every block but one fed by the
            stem's ReLU).
        tau: Gumbel-softmax temperature.
        hard: straight-through one-hot kernel samples.
        clip: initial activation clips.
        kernel_weights: ``"shared"`` (centre crops of one depthwise weight) or ``"separate"``
            (one weight per kernel size); see ``QuantDepthwiseConv2d``.
    """

    def __init__(
        self,
        spec: BlockSpec,
        signed_input: bool,
        tau: float = 5.0,
        hard: bool = True,
        clip: float = 6.0,
        kernel_weights: str = "shared",
    ) -> None:
        super().__init__()
        self.spec = spec
        self.residual = spec.has_residual
        self.kernel = GumbelKernel(spec.kernel_choices, tau, hard)
        self.width = FractionalWidth(spec.widths)
        hidden, wb, ab = spec.widths[-1], spec.bits.w_bits, spec.bits.a_bits
        self.expand: QuantConv2d | None = None
        if spec.expand:
            self.expand = QuantConv2d(spec.in_channels, hidden, 1, 1, wb, ab, signed_input, clip)
            self.bn1 = SlicedBatchNorm2d(hidden)
        dw_signed = signed_input and not spec.expand
        self.dw = QuantDepthwiseConv2d(
            hidden, spec.kernels, spec.stride, wb, ab, dw_signed, clip, kernel_weights
        )
        self.bn2 = SlicedBatchNorm2d(hidden)
        self.project = QuantConv2d(hidden, spec.out_channels, 1, 1, wb, ab, False, clip)
        self.bn3 = SlicedBatchNorm2d(spec.out_channels)

    def convs(self) -> dict[str, QuantLayer]:
        """The block's quantized convs by role: ``expand`` (if any), ``dw``, ``project``."""
        out: dict[str, QuantLayer] = {} if self.expand is None else {"expand": self.expand}
        out.update(dw=self.dw, project=self.project)
        return out

    def set_mode(self, mode: str, choice: BlockChoice | None = None) -> None:
        """Set every choice's sampling mode; ``choice`` gives the options for mode "fixed"."""
        spec = self.spec
        fixed = choice if mode == "fixed" else None
        k = None if fixed is None else spec.kernel_choices.index(fixed.kernel)
        self.kernel.set_mode(mode, k)
        self.width.set_mode(mode, None if fixed is None else spec.widths.index(fixed.width))
        for role, layer in self.convs().items():
            set_bits_mode(layer, mode, spec.bits, None if fixed is None else fixed.conv_bits(role))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, in_channels, H, W]`` → ``[B, out_channels, ⌈H/s⌉, ⌈W/s⌉]``."""
        if self.kernel.mode == "gumbel":
            return self._relaxed(x)
        return self._discrete(x)

    def _relaxed(self, x: Tensor) -> Tensor:
        kernel_weights = scale = None
        if self.kernel.searchable:
            kernel_weights, scale = self.kernel.relaxed_sample()
        # Running statistics move only when the branch is a real sub-network: a hard sample of one
        # kernel. A drawn skip still runs the branch (α_skip's gradient needs its output), with the
        # expected kernel mix, and soft samples mix kernels: neither is an architecture.
        update = kernel_weights is None or _one_hot(kernel_weights, scale)
        # Only the leading channels that the width mask (or θ's gradient) reaches are computed.
        active = self.width.active_channels()
        h = x
        if self.expand is not None:
            h = self.bn1(self.expand(x, out_channels=active), update_stats=update)
        h = self.bn2(self.dw(h, kernel_weights=kernel_weights), update_stats=update)
        mask = self.width.mask()[:active] if self.width.searchable else None
        y = self.bn3(self.project(h, in_mask=mask), update_stats=update)
        if scale is not None:
            y = y * scale
        return x + y if self.residual else y

    def _discrete(self, x: Tensor) -> Tensor:
        kernel = self.kernel.choice()
        if kernel == SKIP:
            return x
        width = self.width.width()
        h = x if self.expand is None else self.bn1(self.expand(x, out_channels=width))
        h = self.bn2(self.dw(h, kernel=kernel))
        y = self.bn3(self.project(h))
        return x + y if self.residual else y


class StaticBlock(nn.Module):
    """The inverted-residual block of one resolved choice: plain layers, fixed bits.

    Args:
        spec: the block's spec in the search space.
        choice: its resolved choice (not skipped).
        signed_input: whether the block input can be negative.
        clip: initial activation clips.
    """

    def __init__(
        self, spec: BlockSpec, choice: BlockChoice, signed_input: bool, clip: float = 6.0
    ) -> None:
        super().__init__()
        if choice.skipped:
            raise ValueError(f"block {spec.index} is skipped: it has no static block")
        assert isinstance(choice.kernel, int)
        self.index = spec.index
        self.residual = spec.has_residual
        c = choice.width
        self.expand: QuantConv2d | None = None
        if choice.expand is not None:
            e = choice.expand
            self.expand = QuantConv2d(
                spec.in_channels, c, 1, 1, (e.w_bits,), (e.a_bits,), signed_input, clip
            )
            self.bn1 = nn.BatchNorm2d(c)
        d, p = choice.dw, choice.project
        dw_signed = signed_input and choice.expand is None
        self.dw = QuantDepthwiseConv2d(
            c, (choice.kernel,), spec.stride, (d.w_bits,), (d.a_bits,), dw_signed, clip
        )
        self.bn2 = nn.BatchNorm2d(c)
        self.project = QuantConv2d(
            c, spec.out_channels, 1, 1, (p.w_bits,), (p.a_bits,), False, clip
        )
        self.bn3 = nn.BatchNorm2d(spec.out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, in_channels, H, W]`` → ``[B, out_channels, ⌈H/s⌉, ⌈W/s⌉]``."""
        h = x if self.expand is None else self.bn1(self.expand(x))
        h = self.bn2(self.dw(h))
        y = self.bn3(self.project(h))
        return x + y if self.residual else y
