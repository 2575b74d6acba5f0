"""Networks written in the project, for ``dnas.graph.convert.convert`` (a user's own model goes the
same way): ``resnet20`` is the CIFAR-style ResNet-20 of He et al. (2016)."""

from dnas.networks.resnet import BasicBlock, ResNetCifar, resnet20

__all__ = ["BasicBlock", "ResNetCifar", "resnet20"]
