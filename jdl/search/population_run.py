"""A population as the run driver (`jdl.run.drive`) sees it: one compiled chunk, and the
progress of its members (training, stopped, diverged, the best validation loss and its
hyper-parameters), observed in one transfer."""

from __future__ import annotations

import numpy as np

from jdl.data import Dataset
from jdl.run import Progress
from jdl.run.driver import Row
from jdl.search.members import Members
from jdl.search.programs import SearchState
from jdl.search.sharding import to_host
from jdl.types import Metrics

__all__ = ["PopulationRun"]


class PopulationRun:
    """A population as the run driver sees it: ``advance`` one chunk; ``observe`` the
    metrics and the members' progress in one transfer.

    Args:
      members: the population's programs (its ``advance`` is looked up at every call).
      train, val: the data sets.
      steps: steps at t >= ``steps`` are no-ops (None: every step runs).
      num_configs: the configurations that are not padding.
      best: the best validation loss and its hyper-parameters before this run (the slices
        of a population trained before it).
      own_steps: members run at their own step counts (see `Members.advance`).

    Attributes:
      best: the best validation loss so far and its hyper-parameters.
    """

    def __init__(
        self,
        members: Members,
        train: Dataset,
        val: Dataset,
        steps: int | None,
        num_configs: int,
        best: tuple[float, str] = (float("inf"), ""),
        own_steps: bool = False,
    ):
        self._members, self._steps, self._n = members, steps, num_configs
        self._own = own_steps
        self._train, self._val = members.place(train, val)
        self.best = best

    def advance(self, state: SearchState) -> tuple[SearchState, Metrics]:
        return self._members.advance(
            state, self._train, self._val, steps=self._steps, own_steps=self._own
        )

    def observe(self, state: SearchState, metrics: Metrics) -> tuple[Row, Progress]:
        stop = state.train.stop
        metrics, clock, stopped, diverged, best, hp = to_host(
            (metrics, state.clock, stop.should_stop, stop.diverged, stop.best_metric, state.hparams)
        )
        n = self._n
        stopped, diverged, best = stopped[:, :n], diverged[:, :n], best[:, :n]
        finite = np.where(np.isfinite(best), best, np.inf)
        s, h = np.unravel_index(np.argmin(finite), finite.shape)
        if finite[s, h] < self.best[0]:
            self.best = (
                float(finite[s, h]),
                ", ".join(f"{k}={v[s, h]:.4g}" for k, v in hp.items()),
            )
        progress = Progress(
            step=int(clock),
            training=int((~stopped).sum()),
            stopped=int((stopped & ~diverged).sum()),
            diverged=int(diverged.sum()),
            best_loss=self.best[0],
            best_at=self.best[1],
        )
        return dict(metrics), progress
