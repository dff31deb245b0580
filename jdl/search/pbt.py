r"""Population-based training in a fixed-shape population, with the lineage of each member.

Members train side by side (`jdl.search.Search`'s compiled chunk); every ``ready_steps`` steps,
within each seed, the worst fraction of the members *exploit*: each copies a member drawn from
the best fraction (its parameters, optimizer state and early-stopping state, by one compiled
gather along the member axis), then *explores*: every hyper-parameter of the copy is multiplied
by a factor drawn from ``perturb`` (0.8 or 1.25 by default) and clipped to its bounds. The
shape never changes, so nothing recompiles; the hyper-parameters become a schedule that the
population discovers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import numpy as np

from jdl.data import Dataset
from jdl.search.grid import Population, check_chunks
from jdl.search.halving import rank_scores
from jdl.search.results import SearchResult
from jdl.search.search import Search
from jdl.search.sharding import to_host

__all__ = ["PBTResult", "population_based_training"]


class PBTResult(NamedTuple):
    """What population-based training found.

    Attributes:
      result: the `SearchResult` of the members (axes (S, H)).
      lineage: shape (events, S, H): at exploit event e, member h of seed s copied member
        ``lineage[e, s, h]`` (itself when it was not replaced).
      hparams: name -> (events + 1, S, H): each member's hyper-parameters at the start and
        after each event.
      event_steps: the step of each event.
    """

    result: SearchResult
    lineage: np.ndarray
    hparams: dict[str, np.ndarray]
    event_steps: list[int]


def population_based_training(
    search: Search,
    pop: Population,
    train: Dataset,
    val: Dataset,
    *,
    steps: int,
    ready_steps: int,
    key: jax.Array,
    fraction: float = 0.25,
    perturb: Sequence[float] = (0.8, 1.25),
    bounds: Mapping[str, tuple[float, float]] | None = None,
    test: Dataset | None = None,
) -> PBTResult:
    r"""Population-based training of ``pop`` with ``search``'s compiled programs.

    At each event (every ``ready_steps`` steps, not after the last one), within each seed:
    with the members ranked by their latest validation loss (diverged: last) and
    :math:`q = \max(1, \lfloor f H \rfloor)`, each of the q worst members copies a member
    drawn uniformly from the q best (exploit), and each of its hyper-parameters becomes
    :math:`\lambda \leftarrow \text{clip}(\lambda \cdot u, \text{bounds})` with u drawn from
    ``perturb`` (explore). The draws come from ``key`` (``fold_in(key, event)``).

    Args:
      search: a `Search`; ``ready_steps`` and ``steps`` are multiples of its ``chunk_steps``.
      pop: the initial configurations and the seeds.
      train, val: data sets.
      steps: total steps.
      ready_steps: steps between two events.
      key: PRNG key of the exploit/explore draws.
      fraction: f in (0, 0.5], the fraction replaced (and the fraction copied from).
      perturb: the factors of explore, each > 0.
      bounds: name -> (low, high) limits of a hyper-parameter after explore.
      test: evaluated with the best parameters at the end.

    Returns:
      A `PBTResult`.

    References:
      M. Jaderberg et al., "Population Based Training of Neural Networks", arXiv:1711.09846,
      2017 (truncation selection, perturb by 0.8 or 1.2).
    """
    check_chunks("steps", steps, search.chunk_steps)
    check_chunks("ready_steps", ready_steps, search.chunk_steps)
    if not 0.0 < fraction <= 0.5:
        raise ValueError(f"fraction must be in (0, 0.5], got {fraction!r}")
    factors = np.asarray(perturb, np.float64)
    if factors.ndim != 1 or factors.size == 0 or not np.all(factors > 0):
        raise ValueError(f"perturb must be a non-empty list of factors > 0, got {perturb!r}")
    bounds = dict(bounds or {})
    for name, (low, high) in bounds.items():
        if name not in pop.hparams:
            raise ValueError(f"bounds name {name!r}, which the population lacks")
        if not low <= high:
            raise ValueError(f"bounds of {name!r} must have low <= high, got {(low, high)}")
    compile_before = search.compile_seconds
    start = time.perf_counter()
    state = search.init(pop, train, val)
    num_seeds, size = state.train.step.shape
    num_configs = pop.num_configs
    q = max(1, int(fraction * num_configs))
    hp_now = to_host(state.hparams)
    hp_history = {k: [v[:, :num_configs]] for k, v in hp_now.items()}
    lineage, event_steps, history = [], [], []
    chunks_per_event = ready_steps // search.chunk_steps
    num_chunks = steps // search.chunk_steps
    for c in range(1, num_chunks + 1):
        state, metrics = search.advance(state, train, val)
        history.append(metrics)
        if c % chunks_per_event or c == num_chunks:
            continue
        event = len(event_steps)
        score = rank_scores(state)
        source = np.tile(np.arange(size), (num_seeds, 1))
        hp_new = {k: v.copy() for k, v in hp_now.items()}
        for s in range(num_seeds):
            order = np.argsort(score[s, :num_configs], kind="stable")
            top, bottom = order[:q], order[-q:]
            k_pick, k_explore = jax.random.split(jax.random.fold_in(key, event * num_seeds + s))
            picks = top[np.asarray(jax.random.randint(k_pick, (q,), 0, q))]
            source[s, bottom] = picks
            draws = np.asarray(jax.random.randint(k_explore, (len(hp_now), q), 0, factors.size))
            for i, (name, values) in enumerate(hp_now.items()):
                new = values[s, picks] * factors[draws[i]]
                if name in bounds:
                    new = np.clip(new, *bounds[name])
                hp_new[name][s, bottom] = new
        hp_now = hp_new
        state = search.copy_members(state, source, hp_now)
        lineage.append(source[:, :num_configs])
        event_steps.append(c * search.chunk_steps)
        for k, v in hp_now.items():
            hp_history[k].append(v[:, :num_configs])
    compile_s = search.compile_seconds - compile_before
    run_s = time.perf_counter() - start - compile_s
    result = search.collect(
        pop, state, history, steps=steps, test=test, compile_s=compile_s, run_s=run_s
    )
    return PBTResult(
        result=result,
        lineage=np.stack(lineage) if lineage else np.zeros((0, num_seeds, num_configs), int),
        hparams={k: np.stack(v) for k, v in hp_history.items()},
        event_steps=event_steps,
    )
