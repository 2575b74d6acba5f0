"""Fitness of candidate architectures: measured inside the supernet, or predicted.

``DirectFitness`` runs a candidate in the supernet (mode "fixed") after re-estimating its
batch-norm statistics on fixed calibration batches, and returns its top-1 accuracy on a fixed subset
of the architecture split (held out from weight training), as APQ and once-for-all evaluate
sub-networks. ``PredictorFitness`` queries an ``AccuracyPredictor`` instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from dnas.derive import ArchState
from dnas.evolve.genome import GenomeSpace
from dnas.evolve.predictor import AccuracyPredictor
from dnas.supernet import SuperNet, recalibrate_bn


class DirectFitness:
    """Accuracy of architectures inside a supernet, with a cache of what it has measured.

    Args:
        supernet: the trained supernet (its BN statistics are overwritten per candidate).
        genomes: the genome space.
        images, labels: the evaluation subset ``[N, C, R, R]``, ``[N]``.
        calibration: batches ``[B, C, R, R]`` for BN re-estimation (the same for every candidate).
        batch_size: evaluation batch size.
    """

    def __init__(
        self,
        supernet: SuperNet,
        genomes: GenomeSpace,
        images: Tensor,
        labels: Tensor,
        calibration: Sequence[Tensor],
        batch_size: int = 500,
    ) -> None:
        if len(images) == 0 or not calibration:
            raise ValueError("direct fitness needs evaluation images and calibration batches")
        self.supernet, self.genomes = supernet, genomes
        self.images, self.labels = images, labels
        self.calibration = list(calibration)
        self.batch_size = batch_size
        self.cache: dict[tuple, float] = {}
        self.evaluated = 0

    @torch.no_grad()
    def accuracy(self, state: ArchState) -> float:
        key = self.genomes.key(state)
        if key in self.cache:
            return self.cache[key]
        net = self.supernet
        net.set_mode("fixed", state.to_arch(self.genomes.space))
        recalibrate_bn(net, self.calibration, len(self.calibration))
        net.eval()
        correct = 0
        for i in range(0, len(self.images), self.batch_size):
            logits = net(self.images[i : i + self.batch_size])
            correct += int((logits.argmax(1) == self.labels[i : i + self.batch_size]).sum())
        acc = correct / len(self.images)
        self.cache[key] = acc
        self.evaluated += 1
        return acc

    def __call__(self, states: Sequence[ArchState]) -> list[float]:
        return [self.accuracy(s) for s in states]

    def restore(self, measured: Iterable[tuple[tuple, float]]) -> None:
        """Take the ``(key, accuracy)`` pairs of an earlier run's cache (``cache.items()``) as
        measured: they are not measured again, and ``evaluated`` counts them."""
        self.cache.update(measured)
        self.evaluated = len(self.cache)


class PredictorFitness:
    """Predicted accuracy of architectures (one batched MLP call per population)."""

    def __init__(self, predictor: AccuracyPredictor, genomes: GenomeSpace) -> None:
        self.predictor, self.genomes = predictor, genomes
        self.queried = 0

    def __call__(self, states: Sequence[ArchState]) -> list[float]:
        self.queried += len(states)
        return self.predictor.predict(self.genomes.encode(states)).tolist()
