"""The child network: a plain, static quantized network of one derived architecture.

As in once-for-all's ``get_active_subnet``: the chosen kernel is the centre crop of the supernet's
shared depthwise weight, the hidden channels are its leading slice, skipped blocks are removed,
and every conv quantizes at its fixed bits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from dnas.ops import QuantLayer
from dnas.space import Architecture, BitChoices, ConvBits, SearchSpace
from dnas.supernet.block import SearchableBlock, StaticBlock
from dnas.supernet.bn import recalibrate_bn
from dnas.supernet.network import QuantMobileNetV2
from dnas.supernet.supernet import SuperNet


def _fixed(bits: ConvBits) -> BitChoices:
    return BitChoices((bits.w_bits,), (bits.a_bits,))


class ChildNet(QuantMobileNetV2):
    """The static network of ``arch``: chosen kernels, sliced widths, fixed-bit quantizers.

    It has no architecture parameters; its state dict holds only tensors (loadable with
    ``torch.load(..., weights_only=True)``).

    Args:
        space: the search space ``arch`` belongs to.
        arch: the architecture (validated against ``space``).
        clip: initial activation clips.
        channels_last: channels-last convs (faster on CPU).

    Attributes:
        arch: the architecture.
    """

    def __init__(
        self,
        space: SearchSpace,
        arch: Architecture,
        clip: float = 6.0,
        channels_last: bool = True,
    ) -> None:
        space.validate_arch(arch)
        blocks = [
            StaticBlock(spec, choice, signed_input=spec.index > 0, clip=clip)
            for spec, choice in zip(space.blocks, arch.blocks)
            if not choice.skipped
        ]
        super().__init__(
            space,
            _fixed(arch.stem),
            _fixed(arch.last),
            _fixed(arch.classifier),
            blocks,
            clip=clip,
            channels_last=channels_last,
        )
        self.arch = arch

    @classmethod
    def from_supernet(
        cls,
        supernet: SuperNet,
        arch: Architecture,
        calibration: Iterable[Any],
        num_batches: int = 50,
    ) -> ChildNet:
        """The child of ``arch`` initialised from the supernet's weights, BN re-estimated.

        Kernels are cropped, channels sliced, BN affine parameters and PACT clips copied (as
        once-for-all's ``get_active_subnet``). The supernet's running statistics average over
        every sub-network that ran, so they are *not* the child's: its statistics are re-estimated
        on ``calibration`` (``recalibrate_bn``), which is why that argument is required. In eval
        mode the child's forward then equals the supernet's in mode "fixed" with the same ``arch``
        re-estimated on the same batches.

        Args:
            supernet: the trained supernet (left unchanged).
            arch: the child's architecture (validated against the supernet's space).
            calibration: training batches (tensors or ``(inputs, ...)`` tuples), e.g.
                ``datamodule.bn_recalibration_loader(num_batches)``.
            num_batches: how many of them to use (≥ 1).
        """
        if num_batches < 1:
            raise ValueError(
                f"num_batches must be >= 1: a child's BN statistics must be re-estimated, got "
                f"{num_batches}"
            )
        ref = next(supernet.parameters())
        child = cls(supernet.space, arch, channels_last=supernet.channels_last)
        child.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            _copy_layer(child.stem, supernet.stem.weight, supernet.stem)
            _copy_bn(child.stem_bn, supernet.stem_bn)
            sblocks = dict(enumerate(supernet.blocks))
            for block in child.blocks:
                assert isinstance(block, StaticBlock)
                src = sblocks[block.index]
                assert isinstance(src, SearchableBlock)
                choice = arch.blocks[block.index]
                c, k = choice.width, int(choice.kernel)
                if block.expand is not None:
                    assert src.expand is not None
                    _copy_layer(block.expand, src.expand.weight[:c], src.expand)
                    _copy_bn(block.bn1, src.bn1)
                _copy_layer(block.dw, src.dw.weight_of(k)[:c], src.dw)
                _copy_bn(block.bn2, src.bn2)
                _copy_layer(block.project, src.project.weight[:, :c], src.project)
                _copy_bn(block.bn3, src.bn3)
            _copy_layer(child.last, supernet.last.weight, supernet.last)
            _copy_bn(child.last_bn, supernet.last_bn)
            _copy_layer(child.classifier, supernet.classifier.weight, supernet.classifier)
            child.classifier.bias.copy_(supernet.classifier.bias)
        used = recalibrate_bn(child, calibration, num_batches)
        if used < 1:
            raise ValueError("calibration gave no batch: the child's BN statistics are unset")
        return child


def _copy_layer(dst: QuantLayer, weight: Tensor, src: QuantLayer) -> None:
    dst.weight.copy_(weight)  # type: ignore[operator]
    dst.aq.clip.copy_(src.aq.clip)


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d) -> None:
    """Copy the leading ``dst.num_features`` channels of ``src``'s affine parameters.

    Running statistics are not copied: ``from_supernet`` re-estimates them.
    """
    c = dst.num_features
    for name in ("weight", "bias"):
        getattr(dst, name).copy_(getattr(src, name)[:c])
