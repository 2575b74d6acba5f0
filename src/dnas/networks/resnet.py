"""The CIFAR-style ResNets of He et al. (CVPR 2016, section 4.2): a 3×3 stem, three stages of
``n`` basic blocks at 16, 32 and 64 channels (the second and third halve the feature map), global
average pooling and one linear classifier; depth ``6n + 2`` (ResNet-20: ``n = 3``, 0.27 M
parameters).

Shortcuts that change shape are a strided 1×1 conv with batch norm (the paper's option B), not
option A's zero-padding: a padded identity ties channel counts the layer graph cannot follow
(``dnas.graph.convert`` would fix those stages' widths), while a 1×1 conv is one more costed layer
whose output is tied to the stage by the residual add.
"""

from __future__ import annotations

from torch import Tensor, nn


class BasicBlock(nn.Module):
    """Two 3×3 conv + BN layers and a residual add; ReLU after the first conv and after the add.

    Args:
        in_channels, out_channels: channels in and out.
        stride: the first conv's stride (and the shortcut's); 2 halves the feature map.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """A ResNet of depth ``6 · blocks + 2`` for small images.

    Args:
        blocks: basic blocks per stage (3 for ResNet-20, 5 for ResNet-32, ...).
        num_classes: classifier outputs.
        in_channels: image channels (3 for CIFAR-10, 1 for Fashion-MNIST).
        widths: the three stages' channels.
    """

    def __init__(
        self,
        blocks: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: tuple[int, int, int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        if blocks < 1:
            raise ValueError(f"blocks per stage must be at least 1, got {blocks}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        channels = widths[0]
        for stage, width in enumerate(widths):
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(channels, width, stride))
                channels = width
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.layers(self.stem(x))
        return self.fc(self.pool(x).flatten(1))


def resnet20(num_classes: int = 10, in_channels: int = 3) -> ResNetCifar:
    """ResNet-20: three stages of three basic blocks (19 3×3 convs, 2 shortcut convs, 1 linear)."""
    return ResNetCifar(3, num_classes, in_channels)
