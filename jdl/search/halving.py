r"""Successive halving inside a fixed-shape population: nothing recompiles.

H configurations train side by side for a rung of T steps; then the configurations are ranked
by their validation loss (mean over seeds) and only the best :math:`n_r = \lceil H / \eta^r
\rceil` survive rung r. An eliminated configuration's slot is refilled with a copy of a
survivor (parameters, optimizer state, early-stopping state and hyper-parameters, by one
compiled gather along the member axis), so the population keeps its shape and the compiled
chunk is reused for every rung. After the last rung one configuration (or the few best) holds
every slot. The lineage records, for each rung, which slot each slot was copied from.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np

from jdl.data import Dataset
from jdl.hyperparams import check_count
from jdl.search.grid import Population, check_chunks
from jdl.search.results import SearchResult
from jdl.search.search import Search, SearchState
from jdl.search.sharding import to_host

__all__ = ["HalvingResult", "rank_scores", "successive_halving"]


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
) -> HalvingResult:
    r"""Successive halving of ``pop``'s configurations with ``search``'s compiled programs.

    After rung r (r = 1, ..., R - 1) the configurations are ranked by their mean validation
    loss over the seeds, the best :math:`n_r = \max(1, \lceil H / \eta^r \rceil)` survive, and
    slot j of the eliminated ones takes a copy of survivor :math:`j \bmod n_r` (best first);
    after rung R the survivors are ranked. With the default
    :math:`R = \lceil \log_\eta H \rceil` rungs, one configuration wins.

    Args:
      search: a `Search` (its ``chunk_steps`` divides ``rung_steps``).
      pop: the configurations and seeds.
      train, val: data sets.
      rung_steps: T, steps per rung, a multiple of ``search.chunk_steps``.
      eta: the elimination factor :math:`\eta \ge 2`.
      rungs: R (default: enough to keep one configuration).
      test: evaluated with the best parameters at the end.

    Returns:
      A `HalvingResult`.

    References:
      K. Jamieson, A. Talwalkar, "Non-stochastic Best Arm Identification and Hyperparameter
      Optimization", AISTATS 2016; L. Li et al., "Hyperband", JMLR 18 (2018).
    """
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise ValueError(f"eta must be an int >= 2, got {eta!r}")
    check_chunks("rung_steps", rung_steps, search.chunk_steps)
    num_configs = pop.num_configs
    if rungs is None:
        rungs = max(1, math.ceil(math.log(num_configs) / math.log(eta) - 1e-9))
    check_count("rungs", rungs)
    compile_before = search.compile_seconds
    start = time.perf_counter()
    state = search.init(pop, train, val)
    num_seeds, size = state.train.step.shape
    hp_now = to_host(state.hparams)
    hp_history = {k: [v] for k, v in hp_now.items()}
    lineage, survivors, history = [], [], []
    alive = np.arange(num_configs)  # slots holding a distinct surviving configuration
    for r in range(1, rungs + 1):
        for _ in range(rung_steps // search.chunk_steps):
            state, metrics = search.advance(state, train, val)
            history.append(metrics)
        score = rank_scores(state).mean(axis=0)  # by configuration, over the seeds
        order = alive[np.argsort(score[alive], kind="stable")]
        if r == rungs:
            break
        keep = order[: max(1, math.ceil(num_configs / eta**r))]
        source = np.arange(size)
        eliminated = np.setdiff1d(np.arange(size), keep)
        source[eliminated] = keep[np.arange(len(eliminated)) % len(keep)]
        source_sh = np.broadcast_to(source, (num_seeds, size))
        hp_now = {k: v[:, source] for k, v in hp_now.items()}
        state = search.copy_members(state, source_sh, hp_now)
        alive = keep
        survivors.append(len(keep))
        lineage.append(source_sh[:, :num_configs])
        for k, v in hp_now.items():
            hp_history[k].append(v)
    compile_s = search.compile_seconds - compile_before
    run_s = time.perf_counter() - start - compile_s
    result = search.collect(
        pop,
        state,
        history,
        steps=rungs * rung_steps,
        test=test,
        compile_s=compile_s,
        run_s=run_s,
    )
    return HalvingResult(
        result=result,
        lineage=np.stack(lineage) if lineage else np.zeros((0, num_seeds, num_configs), int),
        hparams={k: np.stack(v)[:, :, :num_configs] for k, v in hp_history.items()},
        survivors=survivors,
        ranking=order,
    )
