"""The quantized MobileNetV2 skeleton shared by the supernet and the child network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnas.ops import QuantConv2d, QuantLinear
from dnas.space import BitChoices, SearchSpace


class QuantMobileNetV2(nn.Module):
    """stem conv → BN → ReLU → blocks → last 1×1 conv → BN → ReLU → global pool → FC.

    The stem is the network's first (im2col) layer; its input quantizer is signed (a normalised
    image can be negative), as is the last conv's (it reads the last block's linear output).
    The classifier's input quantizer is unsigned (it reads pooled ReLU outputs).

    Args:
        space: the search space (channels, strides, sizes).
        stem_bits, last_bits, classifier_bits: bit choices of the fixed layers.
        blocks: the block modules, in order.
        clip: initial activation clips.
        channels_last: run the convs in channels-last memory format (faster on CPU).
    """

    def __init__(
        self,
        space: SearchSpace,
        stem_bits: BitChoices,
        last_bits: BitChoices,
        classifier_bits: BitChoices,
        blocks: list[nn.Module],
        clip: float = 6.0,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.space = space
        self.channels_last = channels_last
        stem = space.stem
        self.stem = QuantConv2d(
            space.in_channels,
            stem.channels,
            stem.kernel,
            stem.stride,
            stem_bits.w_bits,
            stem_bits.a_bits,
            signed_input=True,
            clip=clip,
        )
        self.stem_bn = nn.BatchNorm2d(stem.channels)
        self.blocks = nn.ModuleList(blocks)
        self.last = QuantConv2d(
            space.last_in_channels,
            space.last.channels,
            1,
            1,
            last_bits.w_bits,
            last_bits.a_bits,
            signed_input=True,
            clip=clip,
        )
        self.last_bn = nn.BatchNorm2d(space.last.channels)
        self.classifier = QuantLinear(
            space.last.channels,
            space.num_classes,
            classifier_bits.w_bits,
            classifier_bits.a_bits,
            signed_input=False,
            clip=clip,
        )

    def _format(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, x: Tensor) -> Tensor:
        """Images ``[B, in_channels, R, R]`` → logits ``[B, num_classes]``."""
        x = self.stem(self._format(x))
        # Converted again after the stem: a 1-channel image's layout is ambiguous (NCHW and NHWC
        # strides coincide), and the convs would then propagate NCHW through the network.
        x = F.relu(self.stem_bn(self._format(x)))
        for block in self.blocks:
            x = block(x)
        x = F.relu(self.last_bn(self.last(x)))
        return self.classifier(x.mean((2, 3)))
