r"""Population-based training in a fixed-shape population, with the lineage of each member.

Members train side by side (`jdl.search.Search`'s compiled chunk); every ``ready_steps`` steps,
within each seed, the worst fraction of the members *exploit*: each copies a member drawn from
the best fraction (its parameters, optimizer state and early-stopping state, by one compiled
gather along the member axis), then *explores*: every hyper-parameter of the copy is multiplied
by a factor drawn from ``perturb`` (0.8 or 1.25 by default) and clipped to its bounds. The
shape never changes, so nothing recompiles; the hyper-parameters become a schedule that the
population discovers.

`PBT` is the rule, a scheduler on the run driver (`jdl.run.drive`) called between chunks;
`population_based_training` runs it with a `jdl.search.Search`, with the driver's progress bar,
Ctrl-C handling and checkpoints.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jdl.data import Dataset
from jdl.run.driver import Row
from jdl.search.grid import Population, check_chunks
from jdl.search.halving import rank_scores
from jdl.search.results import SearchResult
from jdl.search.search import Search, SearchState
from jdl.search.sharding import to_host

__all__ = ["PBT", "PBTResult", "population_based_training"]


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


class PBT:
    """Population-based training as a scheduler of the run driver (see
    `population_based_training`). Its ``log`` (the hyper-parameters after each event, the
    lineage and the event steps) is JSON data, saved with each checkpoint; its draws depend
    only on ``key`` and the event's number, so a resumed run draws as the uninterrupted one."""

    def __init__(
        self,
        search: Search,
        num_configs: int,
        *,
        chunks_per_event: int,
        num_chunks: int,
        key: jax.Array,
        fraction: float,
        factors: np.ndarray,
        bounds: dict[str, tuple[float, float]],
    ):
        self._search, self._n = search, num_configs
        self._every, self._chunks, self._key = chunks_per_event, num_chunks, key
        self._q = max(1, int(fraction * num_configs))
        self._factors, self._bounds = factors, bounds
        self.config = {
            "kind": "pbt",
            "chunks_per_event": chunks_per_event,
            "key": np.asarray(jax.random.key_data(key)).tolist(),
            "fraction": fraction,
            "factors": factors.tolist(),
            "bounds": {k: list(v) for k, v in sorted(bounds.items())},
        }
        self.load({})

    def log(self) -> dict[str, Any]:
        return {
            "hparams": {k: np.asarray(v).tolist() for k, v in self._hparams.items()},
            "lineage": self._lineage,
            "event_steps": self._event_steps,
        }

    def load(self, log: dict[str, Any]) -> None:
        self._hparams = {k: np.asarray(v, np.float32) for k, v in log.get("hparams", {}).items()}
        self._lineage = list(log.get("lineage", []))
        self._event_steps = list(log.get("event_steps", []))

    def __call__(self, state: SearchState, chunk: int, row: Row) -> SearchState:
        if not self._hparams:  # the values the population started with
            self._hparams = {k: v[None] for k, v in to_host(state.hparams).items()}
        if chunk % self._every or chunk >= self._chunks:
            return state
        event = len(self._event_steps)
        score = rank_scores(state)
        now = {k: v[-1] for k, v in self._hparams.items()}
        num_seeds, size = score.shape
        q, n = self._q, self._n
        source = np.tile(np.arange(size), (num_seeds, 1))
        new = {k: v.copy() for k, v in now.items()}
        for s in range(num_seeds):
            order = np.argsort(score[s, :n], kind="stable")
            top, bottom = order[:q], order[-q:]
            k_pick, k_explore = jax.random.split(
                jax.random.fold_in(self._key, event * num_seeds + s)
            )
            picks = top[np.asarray(jax.random.randint(k_pick, (q,), 0, q))]
            source[s, bottom] = picks
            draws = np.asarray(jax.random.randint(k_explore, (len(now), q), 0, self._factors.size))
            for i, (name, values) in enumerate(now.items()):
                moved = values[s, picks] * self._factors[draws[i]]
                if name in self._bounds:
                    moved = np.clip(moved, *self._bounds[name])
                new[name][s, bottom] = moved
        state = self._search.copy_members(state, source, new)
        self._lineage.append(source[:, :n].tolist())
        self._event_steps.append(chunk * self._search.eval_every)
        self._hparams = {k: np.concatenate([v, new[k][None]]) for k, v in self._hparams.items()}
        return state

    def result(self, result: SearchResult) -> PBTResult:
        num_seeds = result.steps.shape[0]
        return PBTResult(
            result=result,
            lineage=np.asarray(self._lineage, np.int64).reshape(-1, num_seeds, self._n),
            hparams={k: v[:, :, : self._n] for k, v in self._hparams.items()},
            event_steps=list(self._event_steps),
        )


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
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    tensorboard: str | os.PathLike | None = None,
) -> PBTResult:
    r"""Population-based training of ``pop`` with ``search``'s compiled programs.

    At each event (every ``ready_steps`` steps, not after the last one), within each seed:
    with the members ranked by their latest validation loss (diverged: last) and
    :math:`q = \max(1, \lfloor f H \rfloor)`, each of the q worst members copies a member
    drawn uniformly from the q best (exploit), and each of its hyper-parameters becomes
    :math:`\lambda \leftarrow \text{clip}(\lambda \cdot u, \text{bounds})` with u drawn from
    ``perturb`` (explore). The draws come from ``key`` (``fold_in(key, event)``).

    It runs as `Search.run` with the `PBT` scheduler: the same progress bar, Ctrl-C handling
    (members so far returned, ``result.interrupted``) and checkpoints (the same call again
    resumes and ends with the uninterrupted run's results).

    Args:
      search: a `Search`; ``ready_steps`` and ``steps`` are multiples of its ``eval_every``.
      pop: the initial configurations and the seeds.
      train, val: data sets.
      steps: total steps.
      ready_steps: steps between two events.
      key: PRNG key of the exploit/explore draws.
      fraction: f in (0, 0.5], the fraction replaced (and the fraction copied from).
      perturb: the factors of explore, each > 0.
      bounds: name -> (low, high) limits of a hyper-parameter after explore.
      test: evaluated with the best parameters at the end.
      progress, checkpoint_dir, checkpoint_every, tensorboard: as in `Search.run`.

    Returns:
      A `PBTResult`.

    References:
      M. Jaderberg et al., "Population Based Training of Neural Networks", arXiv:1711.09846,
      2017 (truncation selection, perturb by 0.8 or 1.2).
    """
    check_chunks("steps", steps, search.eval_every)
    check_chunks("ready_steps", ready_steps, search.eval_every)
    if not 0.0 < fraction <= 0.5:
        raise ValueError(f"fraction must be in (0, 0.5], got {fraction!r}")
    factors = np.asarray(perturb, np.float64)
    if factors.ndim != 1 or factors.size == 0 or not np.all(factors > 0):
        raise ValueError(f"perturb must be a non-empty list of factors > 0, got {perturb!r}")
    if not isinstance(pop, Population):
        raise TypeError(f"expected a Population (see jdl.search.population), got {pop!r}")
    bounds = dict(bounds or {})
    for name, (low, high) in bounds.items():
        if name not in pop.hparams:
            raise ValueError(f"bounds name {name!r}, which the population lacks")
        if not low <= high:
            raise ValueError(f"bounds of {name!r} must have low <= high, got {(low, high)}")
    pbt = PBT(
        search,
        pop.num_configs,
        chunks_per_event=ready_steps // search.eval_every,
        num_chunks=steps // search.eval_every,
        key=key,
        fraction=fraction,
        factors=factors,
        bounds=bounds,
    )
    result = search.run(
        pop,
        train,
        val,
        steps=steps,
        test=test,
        progress=progress,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        tensorboard=tensorboard,
        scheduler=pbt,
    )
    return pbt.result(result)
