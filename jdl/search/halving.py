r"""Successive halving inside a fixed-shape population: nothing recompiles.

H configurations train side by side for a rung of T steps; then the configurations are ranked
by their validation loss (mean over seeds) and only the best :math:`n_r = \lceil H / \eta^r
\rceil` survive rung r. An eliminated configuration's slot is refilled with a copy of a
survivor (parameters, optimizer state, early-stopping state and hyper-parameters, by one
compiled gather along the member axis), so the population keeps its shape and the compiled
chunk is reused for every rung. After the last rung one configuration (or the few best) holds
every slot. The lineage records, for each rung, which slot each slot was copied from.

`Halving` is the rule, a scheduler on the run driver (`jdl.run.drive`) called between chunks;
`successive_halving` runs it with a `jdl.search.Search`, with the driver's progress bar,
Ctrl-C handling and checkpoints.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import numpy as np

from jdl.data import Dataset
from jdl.hyperparams import check_count
from jdl.run.driver import Row
from jdl.search.grid import Population, check_chunks
from jdl.search.results import SearchResult
from jdl.search.search import Search, SearchState
from jdl.search.sharding import to_host

__all__ = ["Halving", "HalvingResult", "rank_scores", "successive_halving"]


class HalvingResult(NamedTuple):
    """What successive halving found.

    Attributes:
      result: the `SearchResult` of the slots (axes (S, H); slot h ends holding the
        configuration ``hparams[name][-1, s, h]``).
      lineage: shape (rungs - 1, S, H): after rung r, slot h holds a copy of slot
        ``lineage[r - 1, s, h]`` (itself when it survived).
      hparams: name -> (rungs, S, H): each slot's hyper-parameters during each rung.
      survivors: the number of configurations kept after each rung but the last.
      ranking: the slots still distinct after the last rung, best first (``ranking[0]`` is
        the winner).
    """

    result: SearchResult
    lineage: np.ndarray
    hparams: dict[str, np.ndarray]
    survivors: list[int]
    ranking: np.ndarray


def rank_scores(state: SearchState) -> np.ndarray:
    """Each slot's score, shape (S, H'): its latest validation loss, +inf when it diverged,
    stopped with a non-finite loss, or is padding (lower is better)."""
    last, diverged, valid = to_host(
        (state.last["val_loss"], state.train.stop.diverged, state.valid)
    )
    score = np.where(np.isfinite(last) & ~diverged, last, np.inf)
    return np.where(valid[None, :], score, np.inf)


class Halving:
    """Successive halving as a scheduler of the run driver (see `successive_halving`).

    Its ``log`` (each slot's hyper-parameters per rung, the lineage, the survivors and the
    slots still distinct) is JSON data, saved with each checkpoint.
    """

    def __init__(self, search: Search, num_configs: int, rung_chunks: int, rungs: int, eta: int):
        self._search, self._n = search, num_configs
        self._rung_chunks, self._rungs, self._eta = rung_chunks, rungs, eta
        self.config = {"kind": "halving", "rung_chunks": rung_chunks, "rungs": rungs, "eta": eta}
        self.load({})

    def log(self) -> dict[str, Any]:
        return {
            "hparams": {k: np.asarray(v).tolist() for k, v in self._hparams.items()},
            "lineage": self._lineage,
            "survivors": self._survivors,
            "alive": self._alive.tolist(),
        }

    def load(self, log: dict[str, Any]) -> None:
        self._hparams = {k: np.asarray(v, np.float32) for k, v in log.get("hparams", {}).items()}
        self._lineage = list(log.get("lineage", []))
        self._survivors = list(log.get("survivors", []))
        self._alive = np.asarray(log.get("alive", range(self._n)), np.int64)

    def __call__(self, state: SearchState, chunk: int, row: Row) -> SearchState:
        if not self._hparams:  # the first rung's values, as the population started
            self._hparams = {k: v[None] for k, v in to_host(state.hparams).items()}
        if chunk % self._rung_chunks:
            return state
        r = chunk // self._rung_chunks
        score = rank_scores(state).mean(axis=0)  # by configuration, over the seeds
        self._alive = self._alive[np.argsort(score[self._alive], kind="stable")]
        if r >= self._rungs:
            return state
        num_seeds, size = next(iter(self._hparams.values())).shape[1:]
        keep = self._alive[: max(1, math.ceil(self._n / self._eta**r))]
        source = np.arange(size)
        eliminated = np.setdiff1d(np.arange(size), keep)
        source[eliminated] = keep[np.arange(len(eliminated)) % len(keep)]
        source_sh = np.broadcast_to(source, (num_seeds, size))
        now = {k: v[-1][:, source] for k, v in self._hparams.items()}
        state = self._search.copy_members(state, source_sh, now)
        self._alive = keep
        self._survivors.append(len(keep))
        self._lineage.append(source_sh[:, : self._n].tolist())
        self._hparams = {k: np.concatenate([v, now[k][None]]) for k, v in self._hparams.items()}
        return state

    def result(self, result: SearchResult) -> HalvingResult:
        num_seeds = result.steps.shape[0]
        lineage = np.asarray(self._lineage, np.int64).reshape(-1, num_seeds, self._n)
        return HalvingResult(
            result=result,
            lineage=lineage,
            hparams={k: v[:, :, : self._n] for k, v in self._hparams.items()},
            survivors=list(self._survivors),
            ranking=self._alive,
        )


def successive_halving(
    search: Search,
    pop: Population,
    train: Dataset,
    val: Dataset,
    *,
    rung_steps: int,
    eta: int = 2,
    rungs: int | None = None,
    test: Dataset | None = None,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    tensorboard: str | os.PathLike | None = None,
) -> HalvingResult:
    r"""Successive halving of ``pop``'s configurations with ``search``'s compiled programs.

    After rung r (r = 1, ..., R - 1) the configurations are ranked by their mean validation
    loss over the seeds, the best :math:`n_r = \max(1, \lceil H / \eta^r \rceil)` survive, and
    slot j of the eliminated ones takes a copy of survivor :math:`j \bmod n_r` (best first);
    after rung R the survivors are ranked. With the default
    :math:`R = \lceil \log_\eta H \rceil` rungs, one configuration wins.

    It runs as `Search.run` with the `Halving` scheduler: the same progress bar, Ctrl-C
    handling (members so far returned, ``result.interrupted``) and checkpoints (the same call
    again resumes and ends with the uninterrupted run's results).

    Args:
      search: a `Search` (its ``eval_every`` divides ``rung_steps``).
      pop: the configurations and seeds.
      train, val: data sets.
      rung_steps: T, steps per rung, a multiple of ``search.eval_every``.
      eta: the elimination factor :math:`\eta \ge 2`.
      rungs: R (default: enough to keep one configuration).
      test: evaluated with the best parameters at the end.
      progress, checkpoint_dir, checkpoint_every, tensorboard: as in `Search.run`.

    Returns:
      A `HalvingResult`.

    References:
      K. Jamieson, A. Talwalkar, "Non-stochastic Best Arm Identification and Hyperparameter
      Optimization", AISTATS 2016; L. Li et al., "Hyperband", JMLR 18 (2018).
    """
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise ValueError(f"eta must be an int >= 2, got {eta!r}")
    check_chunks("rung_steps", rung_steps, search.eval_every)
    if not isinstance(pop, Population):
        raise TypeError(f"expected a Population (see jdl.search.population), got {pop!r}")
    num_configs = pop.num_configs
    if rungs is None:
        rungs = max(1, math.ceil(math.log(num_configs) / math.log(eta) - 1e-9))
    check_count("rungs", rungs)
    halving = Halving(search, num_configs, rung_steps // search.eval_every, rungs, eta)
    result = search.run(
        pop,
        train,
        val,
        steps=rungs * rung_steps,
        test=test,
        progress=progress,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        tensorboard=tensorboard,
        scheduler=halving,
    )
    return halving.result(result)
