"""Quantized convs and linear layer with searchable bits and dynamic (sliced or masked) channels.

Each layer owns one weight of its largest shape, a ``WeightQuantizer`` and the ``ActQuantizer`` of
its *input*. Narrower instances use the leading channels (a slice, as in once-for-all); in gumbel
mode the fractional width mask is folded into the weight *before* quantization, so the
per-output-channel scale is taken over the active input channels only, exactly as in the sliced
child network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnas.ops.bits import ActQuantizer, WeightQuantizer
from dnas.ops.kernel import crop_masks, mix_kernels, mix_separate_kernels


class QuantLayer(nn.Module):
    """A layer with a quantized weight (``wq``) and a quantized input (``aq``)."""

    def __init__(
        self, w_bits: Sequence[int], a_bits: Sequence[int], signed_input: bool, clip: float
    ) -> None:
        super().__init__()
        self.wq = WeightQuantizer(w_bits)
        self.aq = ActQuantizer(a_bits, signed=signed_input, clip=clip)


class QuantConv2d(QuantLayer):
    """A dense ``k×k`` conv (no bias; a BN follows) with quantized weight and input.

    Args:
        in_channels: input channels of the largest instance.
        out_channels: output channels of the largest instance.
        kernel_size: odd kernel size; 'same' padding ``k // 2``.
        stride: stride.
        w_bits: weight bit-width choices.
        a_bits: input-activation bit-width choices.
        signed_input: signed input quantizer (the input can be negative).
        clip: initial activation clip α.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        w_bits: Sequence[int] = (8,),
        a_bits: Sequence[int] = (8,),
        signed_input: bool = False,
        clip: float = 6.0,
    ) -> None:
        super().__init__(w_bits, a_bits, signed_input, clip)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def forward(
        self, x: Tensor, out_channels: int | None = None, in_mask: Tensor | None = None
    ) -> Tensor:
        """Convolve ``x`` ``[B, c_in, H, W]`` (``c_in ≤ in_channels``, the leading ones).

        Args:
            x: input; its channel count selects the leading input channels of the weight.
            out_channels: compute only the leading output channels (default: all).
            in_mask: ``[c_in]`` per-input-channel mask (the fractional width), applied to the
                weight before quantization.

        Returns:
            ``[B, out_channels, ⌈H/stride⌉, ⌈W/stride⌉]``.
        """
        w = self.weight
        if out_channels is not None and out_channels < self.out_channels:
            w = w[:out_channels]
        c_in = x.shape[1]
        if c_in < self.in_channels:
            w = w[:, :c_in]
        if in_mask is not None:
            w = w * in_mask.view(1, -1, 1, 1)
        return F.conv2d(self.aq(x), self.wq(w), None, self.stride, self.kernel_size // 2)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )


KERNEL_WEIGHTS = ("shared", "separate")


class QuantDepthwiseConv2d(QuantLayer):
    """A depthwise conv over kernel sizes: one shared weight (centre crops) or one per size.

    ``kernel_weights="shared"`` (once-for-all, single-path NAS): kernel ``k`` is the centre
    ``k×k`` crop of one ``[channels, 1, max, max]`` weight. ``"separate"`` (FBNet): each size has
    its own weight, stored centred in a ``[len(kernels), channels, 1, max, max]`` tensor (zero
    outside its window), so a small kernel is trained for itself and not as the centre of a
    larger one. Either way the relaxed forward convolves once with the mixed kernel.

    Args:
        channels: channels of the largest instance.
        kernels: kernel sizes (odd).
        stride: stride.
        w_bits, a_bits, signed_input, clip: as for ``QuantConv2d``.
        kernel_weights: ``"shared"`` or ``"separate"`` (one kernel size: always one weight).
    """

    def __init__(
        self,
        channels: int,
        kernels: Sequence[int],
        stride: int = 1,
        w_bits: Sequence[int] = (8,),
        a_bits: Sequence[int] = (8,),
        signed_input: bool = False,
        clip: float = 6.0,
        kernel_weights: str = "shared",
    ) -> None:
        super().__init__(w_bits, a_bits, signed_input, clip)
        if kernel_weights not in KERNEL_WEIGHTS:
            raise ValueError(
                f"kernel_weights={kernel_weights!r} is not one of {list(KERNEL_WEIGHTS)}"
            )
        self.channels, self.stride = channels, stride
        self.kernels = tuple(sorted(int(k) for k in kernels))
        self.max_kernel = self.kernels[-1]
        self.separate = kernel_weights == "separate" and len(self.kernels) > 1
        k = self.max_kernel
        masks = crop_masks(self.kernels)
        self.register_buffer("masks", masks, persistent=False)
        if self.separate:
            # MobileNetV2's fan-out init for each size, zero outside its window.
            std = torch.tensor([math.sqrt(2.0 / kk**2) for kk in self.kernels])
            w = torch.randn(len(self.kernels), channels, 1, k, k) * std.view(-1, 1, 1, 1, 1)
            self.weight = nn.Parameter(w * masks.view(len(self.kernels), 1, 1, k, k))
        else:
            self.weight = nn.Parameter(torch.empty(channels, 1, k, k))
            # Fan-out init as if for the smallest kernel (the crops share the weight).
            std = math.sqrt(2.0 / (self.kernels[0] ** 2))
            nn.init.normal_(self.weight, 0.0, std)

    def weight_of(self, kernel: int) -> Tensor:
        """The ``[channels, 1, kernel, kernel]`` weight of one kernel size."""
        if kernel not in self.kernels:
            raise ValueError(f"kernel {kernel} is not one of {list(self.kernels)}")
        w = self.weight[self.kernels.index(kernel)] if self.separate else self.weight
        o = (self.max_kernel - kernel) // 2
        return w[:, :, o : o + kernel, o : o + kernel] if o else w

    def forward(
        self, x: Tensor, kernel: int | None = None, kernel_weights: Tensor | None = None
    ) -> Tensor:
        """Depthwise-convolve ``x`` ``[B, c, H, W]`` (``c ≤ channels``, the leading ones).

        Args:
            x: input.
            kernel: one kernel size (its centre crop of the weight); default the largest.
            kernel_weights: ``[len(kernels)]`` weights g_i: convolve once with the mixed kernel
                ``Σ g_i·crop_i(W)`` at the largest size (overrides ``kernel``).

        Returns:
            ``[B, c, ⌈H/stride⌉, ⌈W/stride⌉]``.
        """
        c = x.shape[1]
        if kernel_weights is not None:
            k = self.max_kernel
            if self.separate:
                w = self.weight if c == self.channels else self.weight[:, :c]
                w = mix_separate_kernels(w, kernel_weights, self.masks)
            else:
                w = self.weight if c == self.channels else self.weight[:c]
                w = mix_kernels(w, kernel_weights, self.masks)
        else:
            k = self.max_kernel if kernel is None else kernel
            w = self.weight_of(k)
            w = w if c == self.channels else w[:c]
        return F.conv2d(self.aq(x), self.wq(w), None, self.stride, k // 2, 1, c)

    def extra_repr(self) -> str:
        sep = ", separate weights" if self.separate else ""
        return f"{self.channels}, kernels={list(self.kernels)}, stride={self.stride}{sep}"


class QuantLinear(QuantLayer):
    """A fully-connected layer with bias, quantized weight (per output) and quantized input.

    Args:
        in_features: input features.
        out_features: outputs.
        w_bits, a_bits, signed_input, clip: as for ``QuantConv2d``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        w_bits: Sequence[int] = (8,),
        a_bits: Sequence[int] = (8,),
        signed_input: bool = False,
        clip: float = 6.0,
    ) -> None:
        super().__init__(w_bits, a_bits, signed_input, clip)
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features).normal_(0.0, 0.01))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, in_features]`` → ``[B, out_features]``."""
        return F.linear(self.aq(x), self.wq(self.weight), self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}"
