"""Architectures as genomes for the evolutionary baseline (APQ, Wang et al. CVPR 2020, Sec. 4).

A genome is a ``dnas.derive.ArchState``: per block a kernel index (``skip`` last), a width index and
the (weight, activation) bit indices of each of its convs, plus the bit indices of the fixed layers.
Drawing, mutating and crossing over work on those indices; ``encode`` gives the one-hot features of
APQ's accuracy predictor.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from dnas.derive import ArchState
from dnas.errors import DnasError
from dnas.space import LayerKey, SearchSpace

FIXED = "fixed"
"""The gene of the stem, last conv and classifier bits (mutated and crossed like a block)."""


def _block_keys(space: SearchSpace) -> dict[int | str, list[LayerKey]]:
    """The costed layers whose bits belong to each gene (a block, or the fixed layers)."""
    genes: dict[int | str, list[LayerKey]] = {b.index: [] for b in space.blocks}
    genes[FIXED] = []
    for cl in space.costed_layers():
        genes[cl.key.block if cl.key.block >= 0 else FIXED].append(cl.key)
    return genes


class GenomeSpace:
    """Draws, mutates, crosses over and encodes ``ArchState`` genomes of one search space.

    Args:
        space: the search space.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.layers = {cl.key: cl for cl in space.costed_layers()}
        self.genes = _block_keys(space)
        self.n_kernels = {b.index: len(space.kernel_choices(b.index)) for b in space.blocks}
        self.skip_index = {
            b.index: (len(space.kernel_choices(b.index)) - 1)
            if "skip" in space.kernel_choices(b.index)
            else None
            for b in space.blocks
        }
        self.n_widths = {b.index: len(b.widths) for b in space.blocks}
        self.index_sizes: list[int] = []  # the number of choices behind each of ``indices``
        for gene, keys in self.genes.items():
            if gene != FIXED:
                self.index_sizes += [self.n_kernels[gene], self.n_widths[gene]]
            for k in keys:
                self.index_sizes += [len(self.layers[k].w_bits), len(self.layers[k].a_bits)]
        self.num_features = sum(self.index_sizes)  # one one-hot slot per choice

    # --------------------------------------------------------------------------------- draws
    def _draw_gene(self, state: ArchState, gene: int | str, rng: random.Random) -> None:
        if gene != FIXED:
            state.kernel[gene] = rng.randrange(self.n_kernels[gene])
            state.width[gene] = rng.randrange(self.n_widths[gene])
        for k in self.genes[gene]:
            cl = self.layers[k]
            state.bits[k] = (rng.randrange(len(cl.w_bits)), rng.randrange(len(cl.a_bits)))

    def random(self, rng: random.Random) -> ArchState:
        """Every choice drawn uniformly (as the supernet's uniform mode draws them)."""
        state = ArchState({}, {}, {})
        for gene in self.genes:
            self._draw_gene(state, gene, rng)
        return state

    def mutate(self, parent: ArchState, rng: random.Random, prob: float = 0.1) -> ArchState:
        """A copy whose genes (each block, and the fixed layers) are re-drawn with ``prob``."""
        child = parent.copy()
        for gene in self.genes:
            if rng.random() < prob:
                self._draw_gene(child, gene, rng)
        return child

    def crossover(self, a: ArchState, b: ArchState, rng: random.Random) -> ArchState:
        """Each gene from either parent with probability ½."""
        child = a.copy()
        for gene in self.genes:
            src = a if rng.random() < 0.5 else b
            if gene != FIXED:
                child.kernel[gene] = src.kernel[gene]
                child.width[gene] = src.width[gene]
            for k in self.genes[gene]:
                child.bits[k] = src.bits[k]
        return child

    def key(self, state: ArchState) -> tuple:
        """A hashable identity: equal for genomes that run the same network (a skipped block's
        width and bits do not matter)."""
        out: list = []
        for gene, keys in self.genes.items():
            if gene != FIXED and state.kernel[gene] == self.skip_index[gene]:
                out.append(("skip", gene))
                continue
            if gene != FIXED:
                out.append((state.kernel[gene], state.width[gene]))
            out.extend(state.bits[k] for k in keys)
        return tuple(out)

    def indices(self, state: ArchState) -> list[int]:
        """The genome as a flat list of choice indices (kernel, width, then each conv's w/a bits,
        gene by gene): plain data for a checkpoint. Unlike ``key``, it keeps a skipped block's
        width and bits, which its offspring may inherit."""
        out: list[int] = []
        for gene, keys in self.genes.items():
            if gene != FIXED:
                out += [state.kernel[gene], state.width[gene]]
            for k in keys:
                out += list(state.bits[k])
        return out

    def from_indices(self, indices: Sequence[int]) -> ArchState:
        """The genome ``indices`` lists (the inverse of ``indices``).

        Raises:
            DnasError: a list of the wrong length or with an index out of range.
        """
        sizes = self.index_sizes
        values = list(indices)
        bad = len(values) != len(sizes) or any(
            isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < n
            for v, n in zip(values, sizes)
        )
        if bad:
            raise DnasError(
                f"not a genome of space {self.space.name!r}: {len(values)} indices, expected "
                f"{len(sizes)} within {sizes}"
            )
        state = ArchState({}, {}, {})
        it = iter(values)
        for gene, keys in self.genes.items():
            if gene != FIXED:
                state.kernel[gene], state.width[gene] = next(it), next(it)
            for k in keys:
                state.bits[k] = (next(it), next(it))
        return state

    # ------------------------------------------------------------------------------ features
    def encode(self, states: Sequence[ArchState]) -> torch.Tensor:
        """APQ's predictor input: one-hot kernel, width and per-conv w/a bits of every gene.

        A skipped block has its kernel one-hot at ``skip`` and zeros for its width and bits.

        Returns:
            ``[len(states), num_features]`` float32.
        """
        rows = []
        for s in states:
            parts: list[torch.Tensor] = []
            for gene, keys in self.genes.items():
                skipped = gene != FIXED and s.kernel[gene] == self.skip_index[gene]
                if gene != FIXED:
                    parts.append(_one_hot(s.kernel[gene], self.n_kernels[gene]))
                    parts.append(_one_hot(s.width[gene], self.n_widths[gene], skipped))
                for k in keys:
                    cl = self.layers[k]
                    wi, ai = s.bits[k]
                    parts.append(_one_hot(wi, len(cl.w_bits), skipped))
                    parts.append(_one_hot(ai, len(cl.a_bits), skipped))
            rows.append(torch.cat(parts))
        return torch.stack(rows) if rows else torch.zeros(0, self.num_features)


def _one_hot(i: int, n: int, zero: bool = False) -> torch.Tensor:
    v = torch.zeros(n)
    if not zero:
        v[i] = 1.0
    return v
