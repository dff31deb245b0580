r"""Asynchronous successive halving (ASHA) in a fixed-shape population whose slots never idle.

H slots train side by side, each holding a *trial*: a configuration drawn from a `Sampler`,
run on every seed. Rung k is reached after :math:`m_k = m_0 \eta^k` of the trial's own steps
(k = 0, ..., R - 1). A trial that reaches rung k < R - 1 continues only if its score (its best
validation loss, mean over the seeds) is among the best :math:`\lfloor n_k / \eta \rfloor` of
the :math:`n_k` scores ever recorded at rung k; otherwise it is eliminated. A trial that
reaches rung R - 1 is complete. The slot of an eliminated, complete, early-stopped or diverged
trial is refilled at once with a *new* trial, the next draw of the sampler, trained from its
seed's initial parameters with a new optimizer state and early-stopping state (one compiled
program, `Members.reset_members`), so the population keeps its shape, nothing recompiles and
no slot waits. Each member runs at its own step count (``own_steps``): a refilled member equals
the single run ``fit(loss_fn, init_fn(k_init), optimizer(lambda), key=k_run)`` of its seed.

Two deviations from the asynchronous algorithm, both for the fixed shape: a trial not
promoted when it reaches a rung is eliminated at once (ASHA would pause it and might promote it
later, which would idle its slot), and the best trial that finished (complete or early-stopped)
keeps its slot, frozen, so the result holds its parameters; its slot is refilled when a better
one finishes. No new trial starts when fewer than :math:`m_0` steps remain. The budget is
counted in member-steps: every member's optimizer steps, summed.

`ASHA` is the rule, a scheduler on the run driver (`jdl.run.drive`); `asha` runs it with a
`jdl.search.Search`, with the driver's progress bar, Ctrl-C handling and checkpoints.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import numpy as np

from jdl.data import Dataset
from jdl.hyperparams import check_count
from jdl.run.driver import Row
from jdl.search.grid import check_chunks
from jdl.search.results import SearchResult
from jdl.search.samplers import Sampler, random_search
from jdl.search.search import Search, SearchState
from jdl.search.sharding import to_host

__all__ = ["ASHA", "ASHAResult", "asha"]


class ASHAResult(NamedTuple):
    """What ASHA found.

    Attributes:
      result: the `SearchResult` of the slots at the end (axes (S, H)); slot h then holds
        trial ``slot_trials[h]``, whose hyper-parameters are ``trials[slot_trials[h]]``.
      trials: every trial, in the order started: ``id``, ``slot``, ``hparams``, ``origin``
        (the population's step when it started), ``rung`` (the highest rung reached, -1: none),
        ``steps`` (the optimizer steps it took, most over its seeds), ``score`` (its best
        validation loss, mean over seeds; None when diverged or none yet), ``status``
        ("running", "eliminated", "complete", "stopped" (early stopping) or "diverged") and
        ``kept`` (the best finished trial, which holds its slot, frozen).
      slot_trials: shape (H,): the trial each slot holds at the end.
      rung_scores: the scores recorded at each rung, in order.
      best: the trial with the lowest score (the earliest on ties).
      member_steps: the optimizer steps taken, summed over every member of every trial.
    """

    result: SearchResult
    trials: list[dict[str, Any]]
    slot_trials: np.ndarray
    rung_scores: list[list[float]]
    best: dict[str, Any]
    member_steps: int


def _score(value: float | None) -> float:
    return math.inf if value is None else value


def _json(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class ASHA:
    """ASHA as a scheduler of the run driver (see `asha`). Its ``log`` (the trials, the rung
    scores, the sampler's next draw) is JSON data saved with each checkpoint; the refills are
    the sampler's draws by number, so a resumed run refills as the uninterrupted one.

    Attributes:
      own_steps: true: `jdl.search.Search.run` then runs each member at its own step count.
    """

    own_steps = True

    def __init__(
        self,
        search: Search,
        sampler: Sampler,
        num_slots: int,
        *,
        min_chunks: int,
        eta: int,
        rungs: int,
        num_chunks: int,
    ):
        self._search, self._sampler, self._n = search, sampler, num_slots
        self._min, self._eta, self._rungs, self._chunks = min_chunks, eta, rungs, num_chunks
        every = search.eval_every
        self.milestones = [min_chunks * every * eta**k for k in range(rungs)]
        self.config = {
            "kind": "asha",
            "min_steps": min_chunks * every,
            "eta": eta,
            "rungs": rungs,
            "sampler": sampler.config,
        }
        self.load({})

    def log(self) -> dict[str, Any]:
        return {
            "trials": self._trials,
            "slots": self._slots,
            "rung_scores": self._rung_scores,
            "draws": self._draws,
            "kept": self._kept,
            "member_steps": self._member_steps,
            "steps_before": self._steps_before,
        }

    def load(self, log: dict[str, Any]) -> None:
        self._trials = [dict(t) for t in log.get("trials", [])]
        self._slots = list(log.get("slots", []))
        self._rung_scores = [list(r) for r in log.get("rung_scores", [[] for _ in self.milestones])]
        self._draws = int(log.get("draws", self._n))
        self._kept = int(log.get("kept", -1))
        self._member_steps = int(log.get("member_steps", 0))
        self._steps_before = log.get("steps_before")

    def _start(self, hp: dict[str, np.ndarray]) -> None:
        """The first H trials: the population's configurations (draws 0, ..., H - 1)."""
        for h in range(self._n):
            self._new_trial(h, {k: float(v[0, h]) for k, v in hp.items()}, origin=0)

    def _new_trial(self, slot: int, hparams: dict[str, float], origin: int) -> None:
        trial = {"id": len(self._trials), "slot": slot, "hparams": hparams, "origin": origin}
        trial.update({"rung": -1, "steps": 0, "score": None, "status": "running", "kept": False})
        self._trials.append(trial)
        if slot < len(self._slots):
            self._slots[slot] = trial["id"]
        else:
            self._slots.append(trial["id"])

    def __call__(self, state: SearchState, chunk: int, row: Row) -> SearchState:
        steps, stopped, diverged, best, hp = to_host(
            (
                state.train.step,
                state.train.stop.should_stop,
                state.train.stop.diverged,
                state.train.stop.best_metric,
                state.hparams,
            )
        )
        n, clock = self._n, chunk * self._search.eval_every
        if not self._trials:
            self._start(hp)
        before = np.zeros_like(steps) if self._steps_before is None else self._steps_before
        self._member_steps += int((steps[:, :n] - np.asarray(before)[:, :n]).sum())
        score = np.where(diverged | ~np.isfinite(best), np.inf, best).mean(axis=0)
        arrivals, leaving = [], []
        for h in range(n):
            trial = self._trials[self._slots[h]]
            if trial["status"] != "running":
                continue
            trial["steps"], trial["score"] = int(steps[:, h].max()), _json(score[h])
            own = clock - trial["origin"]
            if own in self.milestones:
                k = self.milestones.index(own)
                trial["rung"] = k
                self._rung_scores[k].append(_json(score[h]))
                arrivals.append((h, k))
            elif stopped[:, h].all():
                trial["status"] = "diverged" if diverged[:, h].any() else "stopped"
                leaving.append(h)
        for h, k in arrivals:  # decided once every arrival of this chunk is recorded
            trial = self._trials[self._slots[h]]
            if k == self._rungs - 1:
                trial["status"] = "complete"
            elif stopped[:, h].all():
                trial["status"] = "diverged" if diverged[:, h].any() else "stopped"
            else:
                scores = [_score(s) for s in self._rung_scores[k]]
                mine = _score(trial["score"])
                rank = sum(s < mine for s in scores)
                if math.isfinite(mine) and rank < len(scores) // self._eta:
                    continue  # promoted: trains on towards rung k + 1
                trial["status"] = "eliminated"
            leaving.append(h)
        fresh, halt = self._replace(sorted(leaving), clock)
        if fresh.any() or halt.any():
            hp = {k: v.copy() for k, v in hp.items()}
            refills = np.flatnonzero(fresh[:n])
            if refills.size:
                drawn = self._sampler.draw(self._draws, refills.size)
                self._draws += refills.size
                for i, h in enumerate(refills):
                    config = {k: float(v[i]) for k, v in drawn.items()}
                    self._new_trial(int(h), config, origin=clock)
                    for k, v in config.items():
                        hp[k][:, h] = v
            num_seeds = steps.shape[0]
            state = self._search.reset_members(
                state,
                np.broadcast_to(fresh, (num_seeds, fresh.size)),
                np.broadcast_to(halt, (num_seeds, halt.size)),
                hp,
            )
            steps = np.array(steps)  # a writable copy
            steps[:, :n] = np.where(fresh[None, :n], 0, steps[:, :n])  # padding: dropped
        self._steps_before = steps.tolist()
        return state

    def _replace(self, leaving: list[int], clock: int) -> tuple[np.ndarray, np.ndarray]:
        """Which leaving slots get a new trial (``fresh``) and which stop (``halt``): the
        best finished trial keeps its slot (frozen), the previous keeper's slot is freed."""
        size = len(self._slots)
        fresh, halt = np.zeros(size, bool), np.zeros(size, bool)
        finished = [
            h
            for h in leaving
            if self._trials[self._slots[h]]["status"] in ("complete", "stopped")
            and self._trials[self._slots[h]]["score"] is not None
        ]
        if finished:
            h = min(finished, key=lambda h: _score(self._trials[self._slots[h]]["score"]))
            challenger = self._trials[self._slots[h]]
            kept = self._trials[self._kept] if self._kept >= 0 else None
            if kept is None or _score(challenger["score"]) < _score(kept["score"]):
                if kept is not None:
                    kept["kept"] = False
                    leaving.append(kept["slot"])
                leaving.remove(h)
                challenger["kept"] = True
                self._kept = challenger["id"]
                halt[h] = True
        # A new trial needs room for its first rung; without it the slot stops.
        room = clock + self.milestones[0] <= self._chunks * self._search.eval_every
        for h in leaving:
            fresh[h], halt[h] = room, not room
        return fresh, halt

    def result(self, result: SearchResult) -> ASHAResult:
        scores = [_score(t["score"]) for t in self._trials]
        best = self._trials[int(np.argmin(scores))] if scores else {}
        # The steps of the trials that left their slots count too.
        timing = dict(result.timing, member_steps=float(self._member_steps))
        run_s = timing["run_s"]
        timing["member_steps_per_s"] = self._member_steps / run_s if run_s > 0 else math.nan
        return ASHAResult(
            result=result._replace(timing=timing),
            trials=[dict(t) for t in self._trials],
            slot_trials=np.asarray(self._slots, np.int64),
            rung_scores=[[_score(s) for s in r] for r in self._rung_scores],
            best=dict(best),
            member_steps=self._member_steps,
        )


def asha(
    search: Search,
    sampler: Sampler,
    train: Dataset,
    val: Dataset,
    *,
    num_slots: int,
    budget: int,
    min_steps: int,
    eta: int = 3,
    rungs: int | None = None,
    seeds: int | list[int] = 1,
    test: Dataset | None = None,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    tensorboard: str | os.PathLike | None = None,
) -> ASHAResult:
    r"""ASHA with refills over ``sampler``'s space, with ``search``'s compiled programs.

    The population has ``num_slots`` slots H times ``seeds`` S; it trains for
    :math:`T = \lfloor \text{budget} / (S H) \rfloor` steps (rounded down to whole chunks), so
    at most ``budget`` member-steps. The first H trials are the sampler's draws 0, ..., H - 1;
    each refill takes the next draw. Rung k is at :math:`m_0 \eta^k` steps (of the trial's
    own), k < R; by default R is the most rungs whose last fits in T.

    It runs as `Search.run` with the `ASHA` scheduler: the same progress bar, Ctrl-C handling
    and checkpoints (the same call again resumes and ends with the uninterrupted run's
    results).

    Args:
      search: a `Search`; ``min_steps`` is a multiple of its ``eval_every``.
      sampler: the space and the draws (`jdl.search.Sampler`).
      train, val: data sets.
      num_slots: H, the trials trained at once.
      budget: the most member-steps (optimizer steps summed over members).
      min_steps: :math:`m_0`, the steps of the first rung.
      eta: the reduction factor :math:`\eta \ge 2`.
      rungs: R (default: as many as fit in T).
      seeds: a count S or a list of seeds; every trial runs on each.
      test: evaluated with the slots' best parameters at the end.
      progress, checkpoint_dir, checkpoint_every, tensorboard: as in `Search.run`.

    Returns:
      An `ASHAResult`.

    Raises:
      ValueError: a bad count, ``eta`` < 2, or a budget too small for one rung.

    References:
      L. Li, K. Jamieson, A. Rostamizadeh, E. Gonina, J. Ben-tzur, M. Hardt, B. Recht,
      A. Talwalkar, "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020
      (ASHA, algorithm 2); K. Jamieson, A. Talwalkar, AISTATS 2016 (successive halving).
    """
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise ValueError(f"eta must be an int >= 2, got {eta!r}")
    if not isinstance(sampler, Sampler):
        raise TypeError(f"sampler must be a jdl.search.Sampler, got {type(sampler).__name__}")
    num_slots = check_count("num_slots", num_slots)
    budget = check_count("budget", budget)
    check_chunks("min_steps", min_steps, search.eval_every)
    pop = random_search(sampler, num_slots, seeds)
    every = search.eval_every
    steps = budget // pop.num_members // every * every
    if steps < min_steps:
        raise ValueError(
            f"budget {budget} gives {budget // pop.num_members} steps to each of the "
            f"{pop.num_members} members, fewer than one rung of min_steps={min_steps}"
        )
    if rungs is None:
        rungs = 1 + math.floor(math.log(steps / min_steps) / math.log(eta) + 1e-9)
    check_count("rungs", rungs)
    scheduler = ASHA(
        search,
        sampler,
        num_slots,
        min_chunks=min_steps // every,
        eta=eta,
        rungs=rungs,
        num_chunks=steps // every,
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
        scheduler=scheduler,
    )
    return scheduler.result(result)
