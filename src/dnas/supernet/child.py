"""The child network: a plain, static quantized network of one derived architecture.

As in once-for-all's ``get_active_subnet``: the chosen kernel is the centre crop of the supernet's
shared depthwise weight, the hidden channels are its leading slice, skipped blocks are removed,
and every conv quantizes at its fixed bits.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dnas.ops import QuantLayer
from dnas.space import Architecture, BitChoices, ConvBits, SearchSpace
from dnas.supernet.block import SearchableBlock, StaticBlock
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
    def from_supernet(cls, supernet: SuperNet, arch: Architecture) -> ChildNet:
        """The child of ``arch`` initialised from the supernet's weights.

        Kernels are cropped, channels sliced, BN affine parameters and running statistics and the
        PACT clips copied. In eval mode its forward equals the supernet's in mode "fixed" with
        the same ``arch``.
        """
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
                o = (src.dw.max_kernel - k) // 2
                _copy_layer(block.dw, src.dw.weight[:c, :, o : o + k, o : o + k], src.dw)
                _copy_bn(block.bn2, src.bn2)
                _copy_layer(block.project, src.project.weight[:, :c], src.project)
                _copy_bn(block.bn3, src.bn3)
            _copy_layer(child.last, supernet.last.weight, supernet.last)
            _copy_bn(child.last_bn, supernet.last_bn)
            _copy_layer(child.classifier, supernet.classifier.weight, supernet.classifier)
            child.classifier.bias.copy_(supernet.classifier.bias)
        return child


def _copy_layer(dst: QuantLayer, weight: Tensor, src: QuantLayer) -> None:
    dst.weight.copy_(weight)  # type: ignore[operator]
    dst.aq.clip.copy_(src.aq.clip)


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d) -> None:
    """Copy the leading ``dst.num_features`` channels of ``src``'s parameters and statistics."""
    c = dst.num_features
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[:c])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
