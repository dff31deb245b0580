"""The schedulers of ``python -m experiments.lr_search --scheduler NAME``: each runs the
learning-rate search on the same population shape and budget, and says what its slots hold.

``grid`` is the log grid (the default search); ``random`` draws the learning rates
log-uniformly in [lr_min, lr_max] (`jdl.search.random_search`); ``halving`` halves those draws
(eta = 2) until one is left; ``asha`` refills eliminated, finished or diverged slots with new
draws (eta = 3, a first rung of a tenth of the steps); ``pbt`` exploits and explores every
fifth of the steps (learning rates kept in [lr_min, lr_max]). Every one trains ``num_lrs``
slots x ``seeds`` for ``steps`` steps: ``num_lrs x seeds x steps`` member-steps.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import numpy as np

from jdl.data import Dataset
from jdl.search import (
    Sampler,
    Search,
    SearchResult,
    asha,
    budget_curve,
    log_grid,
    log_uniform,
    population,
    population_based_training,
    random_search,
    successive_halving,
)


class Searched(NamedTuple):
    """A scheduler's search: the result, each member's learning rate at the end (S, H), and
    the scheduler's record for results.json (None for the grid, whose schema is unchanged)."""

    result: SearchResult
    learning_rate: np.ndarray
    record: dict[str, Any] | None


def search_with(
    kind: str,
    search: Search,
    *,
    lr_min: float,
    lr_max: float,
    num_lrs: int,
    seeds: int,
    steps: int,
    train: Dataset,
    val: Dataset,
    test: Dataset,
    checkpoint_dir: str | None,
    tensorboard: str | None = None,
    members_per_chunk: str | None = None,
    memory_budget: int | None = None,
) -> Searched:
    """Runs scheduler ``kind`` (one of ``experiments.lr_search.SCHEDULERS``) for ``steps``
    steps of ``num_lrs`` slots x ``seeds`` seeds."""
    every = search.eval_every
    common = {"test": test, "checkpoint_dir": checkpoint_dir, "tensorboard": tensorboard}
    sliced = {"members_per_chunk": members_per_chunk, "memory_budget": memory_budget}
    space = {"learning_rate": log_uniform(lr_min, lr_max)}
    drawn = random_search(space, num_lrs, seeds, seed=0)
    if kind == "grid":
        pop = population({"learning_rate": log_grid(lr_min, lr_max, num_lrs)}, seeds)
        result = search.run(pop, train, val, steps=steps, **common, **sliced)
        return Searched(result, _broadcast(pop.hparams["learning_rate"], seeds), None)
    if kind == "random":
        result = search.run(drawn, train, val, steps=steps, **common, **sliced)
        record = {"kind": kind, "draws": Sampler(space).config}
        lr = _broadcast(drawn.hparams["learning_rate"], seeds)
    elif kind == "halving":
        rungs = max(1, math.ceil(math.log2(num_lrs) - 1e-9))
        out = successive_halving(
            search, drawn, train, val, rung_steps=steps // rungs, rungs=rungs, **common
        )
        result, lr = out.result, out.hparams["learning_rate"][-1]
        record = {
            "kind": kind,
            "rung_steps": steps // rungs,
            "learning_rates": out.hparams["learning_rate"].tolist(),
            "lineage": out.lineage.tolist(),
            "survivors": out.survivors,
        }
    elif kind == "asha":
        out = asha(
            search,
            Sampler(space),
            train,
            val,
            num_slots=num_lrs,
            budget=num_lrs * seeds * steps,
            min_steps=max(1, steps // 10 // every) * every,
            eta=3,
            seeds=seeds,
            **common,
        )
        result = out.result
        lr = _broadcast(
            np.array([out.trials[t]["hparams"]["learning_rate"] for t in out.slot_trials]), seeds
        )
        record = {
            "kind": kind,
            "trials": out.trials,
            "slot_trials": out.slot_trials.tolist(),
            "rung_scores": out.rung_scores,
        }
    else:
        out = population_based_training(
            search,
            drawn,
            train,
            val,
            steps=steps,
            ready_steps=steps // 5,
            key=jax.random.key(0),
            bounds={"learning_rate": (lr_min, lr_max)},
            **common,
        )
        result, lr = out.result, out.hparams["learning_rate"][-1]
        record = {
            "kind": kind,
            "learning_rates": out.hparams["learning_rate"].tolist(),
            "lineage": out.lineage.tolist(),
            "event_steps": out.event_steps,
        }
    curve = budget_curve(result, every)
    record["member_steps"] = {"paid": int(curve.paid[-1]), "trained": int(curve.trained[-1])}
    return Searched(result, np.asarray(lr, np.float64), record)


def _broadcast(values: np.ndarray, seeds: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(values, np.float64), (seeds, len(values))).copy()
