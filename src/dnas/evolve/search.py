"""APQ's evolutionary search and random search over genomes within an exact-cost budget.

Evolution (APQ, Sec. 4): a population of ``population`` architectures within budget; each
generation keeps the ``parents`` fittest, adds ``mutations`` children (a random parent, each gene
re-drawn with ``mutate_prob``) and ``crossovers`` children (two random parents, each gene from
either); a child over budget by exact table cost is drawn again. Random search (Li & Talwalkar
2019): ``samples`` architectures drawn uniformly within budget, the fittest kept.

Both hand a ``SearchState`` to ``on_state`` after each generation and continue exactly from one
given as ``resume`` (the same draws, the same result as a search never stopped).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dnas.cost.targets import BudgetError, Targets
from dnas.derive import ArchState
from dnas.errors import DnasError
from dnas.evolve.genome import GenomeSpace

Fitness = Callable[[Sequence[ArchState]], list[float]]
CostFn = Callable[[ArchState], dict[str, float]]


@dataclass
class Candidate:
    state: ArchState
    fitness: float
    cost: dict[str, float]


@dataclass
class SearchResult:
    """The fittest candidates (best first) and one history row per generation."""

    ranked: list[Candidate]
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class SearchState:
    """A search after one of its generations: what it needs to continue exactly.

    Attributes:
        population: the population after it (random search: every candidate drawn so far).
        history: the history rows up to it, one per generation (random search: per chunk).
        rng_state: ``rng.getstate()`` after it.
        elapsed_s: wall-clock the search had run (a resumed search carries it on).
    """

    population: list[Candidate]
    history: list[dict[str, float]]
    rng_state: tuple
    elapsed_s: float

    @property
    def generation(self) -> int:
        """The generation just done (0: the initial population; random search: the chunk)."""
        return len(self.history) - 1


def draw_within(
    make: Callable[[], ArchState],
    cost_fn: CostFn,
    targets: Targets,
    max_tries: int = 100_000,
) -> tuple[ArchState, dict[str, float]]:
    """``make()`` until its exact cost fits ``targets``."""
    for _ in range(max_tries):
        state = make()
        cost = cost_fn(state)
        if targets.fits(cost):
            return state, cost
    raise BudgetError(
        f"no architecture within {targets.describe()} in {max_tries} draws: the budget is too "
        "tight for sampling (raise it)"
    )


def _row(gen: int, pop: list[Candidate], t0: float, evaluated: int) -> dict[str, float]:
    fits = [c.fitness for c in pop]
    return {
        "generation": gen,
        "best_fitness": max(fits),
        "mean_fitness": sum(fits) / len(fits),
        "evaluated": evaluated,
        "wall_s": time.perf_counter() - t0,
    }


def evolve(
    genomes: GenomeSpace,
    cost_fn: CostFn,
    targets: Targets,
    fitness: Fitness,
    rng: random.Random,
    generations: int,
    population: int = 100,
    parents: int = 25,
    mutations: int = 50,
    crossovers: int = 50,
    mutate_prob: float = 0.1,
    time_limit_s: float | None = None,
    evaluated: Callable[[], int] = lambda: 0,
    on_generation: Callable[[dict[str, float]], None] | None = None,
    on_state: Callable[[SearchState], None] | None = None,
    resume: SearchState | None = None,
) -> SearchResult:
    """Evolve within the budget; returns the final population ranked by fitness.

    Args:
        generations: generations after the initial population (APQ: 500 with the predictor).
        time_limit_s: stop after the generation that passes this wall-clock (None: no limit).
        evaluated: how many architectures have been measured so far (for the history).
        on_generation: called with each history row.
        on_state: called with the search's state after each generation (to checkpoint it).
        resume: a state ``on_state`` was given: the search continues after its generation, with
            its random state (``rng`` is set to it), as if it had never stopped.
    """
    if not 0 < parents <= population:
        raise DnasError(f"need 0 < parents <= population, got {parents}, {population}")

    def score(states: list[ArchState], costs: list[dict]) -> list[Candidate]:
        return [Candidate(s, f, c) for s, f, c in zip(states, fitness(states), costs)]

    def done() -> None:
        if on_generation:
            on_generation(history[-1])
        if on_state:
            elapsed = time.perf_counter() - t0
            on_state(SearchState(list(pop), list(history), rng.getstate(), elapsed))

    if resume is None:
        t0 = time.perf_counter()
        drawn = [
            draw_within(lambda: genomes.random(rng), cost_fn, targets) for _ in range(population)
        ]
        pop = score([s for s, _ in drawn], [c for _, c in drawn])
        history = [_row(0, pop, t0, evaluated())]
        done()
    else:
        t0 = time.perf_counter() - resume.elapsed_s
        pop, history = list(resume.population), list(resume.history)
        rng.setstate(resume.rng_state)
    for gen in range(len(history), generations + 1):
        if time_limit_s is not None and time.perf_counter() - t0 > time_limit_s:
            break
        top = sorted(pop, key=lambda c: -c.fitness)[:parents]

        def mutant(top=top) -> ArchState:
            return genomes.mutate(rng.choice(top).state, rng, mutate_prob)

        def cross(top=top) -> ArchState:
            return genomes.crossover(rng.choice(top).state, rng.choice(top).state, rng)

        kids = [draw_within(mutant, cost_fn, targets) for _ in range(mutations)]
        kids += [draw_within(cross, cost_fn, targets) for _ in range(crossovers)]
        pop = top + score([s for s, _ in kids], [c for _, c in kids])
        history.append(_row(gen, pop, t0, evaluated()))
        done()
    return SearchResult(sorted(pop, key=lambda c: -c.fitness), history)


def random_search(
    genomes: GenomeSpace,
    cost_fn: CostFn,
    targets: Targets,
    fitness: Fitness,
    rng: random.Random,
    samples: int,
    chunk: int = 100,
    evaluated: Callable[[], int] = lambda: 0,
    on_generation: Callable[[dict[str, float]], None] | None = None,
    on_state: Callable[[SearchState], None] | None = None,
    resume: SearchState | None = None,
) -> SearchResult:
    """``samples`` uniform draws within budget, ranked by fitness (history per ``chunk``).

    ``on_state`` and ``resume`` are as for ``evolve``; a state's population is every candidate
    drawn so far.
    """
    if samples < 1:
        raise DnasError(f"random search needs samples >= 1, got {samples}")
    seen: list[Candidate] = []
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    if resume is not None:
        t0 -= resume.elapsed_s
        seen, history = list(resume.population), list(resume.history)
        rng.setstate(resume.rng_state)
    for start in range(len(seen), samples, chunk):
        drawn = [
            draw_within(lambda: genomes.random(rng), cost_fn, targets)
            for _ in range(min(chunk, samples - start))
        ]
        states = [s for s, _ in drawn]
        seen += [Candidate(s, f, c) for s, f, (_, c) in zip(states, fitness(states), drawn)]
        history.append(_row(len(history), seen, t0, evaluated()))
        if on_generation:
            on_generation(history[-1])
        if on_state:
            elapsed = time.perf_counter() - t0
            on_state(SearchState(list(seen), list(history), rng.getstate(), elapsed))
    return SearchResult(sorted(seen, key=lambda c: -c.fitness), history)
