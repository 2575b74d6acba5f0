"""APQ's evolutionary search and random search, on the same supernet and cost table as the
differentiable search (the baselines it must beat).

``UniformSupernetModule`` trains a supernet with uniform single-path sampling; ``DirectFitness``
measures candidates inside it, ``AccuracyPredictor`` (APQ's 3×400 MLP) predicts them from one-hot
encodings (``GenomeSpace.encode``); ``evolve`` and ``random_search`` search within an exact-cost
budget.
"""

from dnas.evolve.fitness import DirectFitness, PredictorFitness
from dnas.evolve.genome import GenomeSpace
from dnas.evolve.predictor import AccuracyPredictor
from dnas.evolve.search import (
    Candidate,
    SearchResult,
    SearchState,
    draw_within,
    evolve,
    random_search,
)

__all__ = [
    "AccuracyPredictor",
    "Candidate",
    "DirectFitness",
    "GenomeSpace",
    "PredictorFitness",
    "SearchResult",
    "SearchState",
    "draw_within",
    "evolve",
    "random_search",
]
