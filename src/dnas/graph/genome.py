"""Choices of a converted network as genomes for APQ's evolution and random search.

The graph form of ``dnas.evolve.genome``: a genome is a choice as option indices (the derivation's
working form), and its genes are each channel group's width, each layer's kernel and bits, and
each skippable branch's keep-or-skip. Drawing, mutating and crossing over work gene by gene;
``encode`` gives one-hot features for APQ's accuracy predictor (a skipped branch's layers zero).
``dnas.evolve.search.evolve`` and ``random_search`` take it as they take a space's genomes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from dnas.errors import DnasError
from dnas.graph.derive import _State
from dnas.graph.graph import GraphChoice, LayerGraph


class GraphGenomeSpace:
    """Draws, mutates, crosses over and encodes genomes of one layer graph.

    Args:
        graph: the layer graph of a converted network.
    """

    def __init__(self, graph: LayerGraph) -> None:
        self.graph = graph
        self.groups = [g for g in graph.groups if not g.is_fixed]
        self.fixed_groups = {g.name: 0 for g in graph.groups if g.is_fixed}
        self.layers = list(graph.layers)
        self.skips = list(graph.skips)
        self.index_sizes: list[int] = [len(g.widths) for g in self.groups]
        for layer in self.layers:
            self.index_sizes += [len(layer.kernels), len(layer.w_bits), len(layer.a_bits)]
        self.index_sizes += [2] * len(self.skips)
        self.num_features = sum(self.index_sizes)

    # --------------------------------------------------------------------------------- draws
    def _draw(self, state: _State, gene: tuple[str, str], rng: random.Random) -> None:
        kind, name = gene
        if kind == "group":
            state.widths[name] = rng.randrange(len(self.graph.group(name).widths))
        elif kind == "layer":
            layer = self.graph.layer(name)
            state.kernels[name] = rng.randrange(len(layer.kernels))
            state.bits[name] = (rng.randrange(len(layer.w_bits)), rng.randrange(len(layer.a_bits)))
        elif rng.random() < 0.5:
            state.skipped.add(name)
        else:
            state.skipped.discard(name)

    def genes(self) -> list[tuple[str, str]]:
        return (
            [("group", g.name) for g in self.groups]
            + [("layer", layer.name) for layer in self.layers]
            + [("skip", s.name) for s in self.skips]
        )

    def random(self, rng: random.Random) -> _State:
        """Every choice drawn uniformly (a branch kept or skipped with probability ½)."""
        state = _State(dict(self.fixed_groups), {}, {}, set())
        for gene in self.genes():
            self._draw(state, gene, rng)
        return state

    def mutate(self, parent: _State, rng: random.Random, prob: float = 0.1) -> _State:
        """A copy whose genes are each re-drawn with ``prob``."""
        child = parent.copy()
        for gene in self.genes():
            if rng.random() < prob:
                self._draw(child, gene, rng)
        return child

    def crossover(self, a: _State, b: _State, rng: random.Random) -> _State:
        """Each gene from either parent with probability ½."""
        child = a.copy()
        for kind, name in self.genes():
            src = a if rng.random() < 0.5 else b
            if kind == "group":
                child.widths[name] = src.widths[name]
            elif kind == "layer":
                child.kernels[name], child.bits[name] = src.kernels[name], src.bits[name]
            elif name in src.skipped:
                child.skipped.add(name)
            else:
                child.skipped.discard(name)
        return child

    def choice(self, state: _State) -> GraphChoice:
        """The ``GraphChoice`` a genome stands for."""
        return state.choice(self.graph)

    def key(self, state: _State) -> tuple:
        """Equal for genomes that run the same network (a skipped branch's kernels and bits do
        not matter)."""
        removed = {n for s in state.skipped for n in self.graph.skip(s).layers}
        return (
            tuple(state.widths[g.name] for g in self.groups),
            tuple(
                None
                if layer.name in removed
                else (state.kernels[layer.name], state.bits[layer.name])
                for layer in self.layers
            ),
            tuple(sorted(state.skipped)),
        )

    def indices(self, state: _State) -> list[int]:
        """The genome as a flat list of option indices (for a checkpoint)."""
        out = [state.widths[g.name] for g in self.groups]
        for layer in self.layers:
            out += [state.kernels[layer.name], *state.bits[layer.name]]
        out += [int(s.name in state.skipped) for s in self.skips]
        return out

    def from_indices(self, indices: Sequence[int]) -> _State:
        """The inverse of ``indices``.

        Raises:
            DnasError: the wrong length or an index out of range.
        """
        values, sizes = list(indices), self.index_sizes
        if len(values) != len(sizes) or any(
            isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < n
            for v, n in zip(values, sizes)
        ):
            raise DnasError(
                f"not a genome of {self.graph.name!r}: {len(values)} indices, expected "
                f"{len(sizes)} within {sizes}"
            )
        it = iter(values)
        state = _State(dict(self.fixed_groups), {}, {}, set())
        for g in self.groups:
            state.widths[g.name] = next(it)
        for layer in self.layers:
            state.kernels[layer.name] = next(it)
            state.bits[layer.name] = (next(it), next(it))
        for s in self.skips:
            if next(it):
                state.skipped.add(s.name)
        return state

    # ------------------------------------------------------------------------------ features
    def encode(self, states: Sequence[_State]) -> torch.Tensor:
        """One-hot width, kernel, w/a bits and keep/skip of every gene; ``[n, num_features]``."""
        rows = []
        for s in states:
            removed = {n for b in s.skipped for n in self.graph.skip(b).layers}
            v = torch.zeros(self.num_features)
            offset = 0
            for size, i in zip(self.index_sizes, self.indices(s)):
                v[offset + i] = 1.0
                offset += size
            # a skipped branch's layers carry no kernel or bits
            start = sum(self.index_sizes[: len(self.groups)])
            for layer in self.layers:
                width = len(layer.kernels) + len(layer.w_bits) + len(layer.a_bits)
                if layer.name in removed:
                    v[start : start + width] = 0.0
                start += width
            rows.append(v)
        return torch.stack(rows) if rows else torch.zeros(0, self.num_features)
