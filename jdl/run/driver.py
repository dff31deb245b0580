r"""The one Python loop between compiled chunks, under every run jdl trains.

.. math::
    \text{repeat: } (s, m) \leftarrow \text{chunk}(s); \ \text{record}(m);
    \ s \leftarrow \text{scheduler}(s); \ \text{checkpoint}(s)
    \text{ until every member stopped or the chunks are spent.}

`fit` (one member), `jdl.search.Search.run` (a population), successive halving, population-based
training and the adaptive re-estimation all train through `drive`: it owns the progress bar,
Ctrl-C (stop after the chunk in flight, return what was trained, marked interrupted), the
history, the checkpoints and resume, and the scheduler hook that may rewrite the population
between chunks. What differs between them is the compiled chunk (`Run`) and the scheduler.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import numpy as np
from tqdm.auto import tqdm

from jdl.run.checkpoint import Checkpoints
from jdl.run.interrupt import Interrupt, intact
from jdl.types import Metrics

__all__ = ["Outcome", "Progress", "Run", "Scheduler", "drive"]

Row = dict[str, Any]
"""One chunk's record on the host: ``"step"`` (the run's clock), ``"time_s"`` (seconds since
the start) and the chunk's metrics (scalars for one run, arrays over a population's members)."""


class Progress(NamedTuple):
    """A run after a chunk, on the host: what the bar shows and the loop decides on.

    Attributes:
      step: steps taken by every member still training (the run's clock).
      training: members still training.
      stopped: members stopped by early stopping (or at the step budget).
      diverged: members stopped by a non-finite or diverging loss.
      best_loss: the best validation loss so far (inf: none finite yet).
      best_at: the hyper-parameters of the member that holds it ("" for a single run).
    """

    step: int
    training: int
    stopped: int
    diverged: int
    best_loss: float
    best_at: str = ""

    def postfix(self) -> dict[str, str]:
        """The progress bar's fields."""
        members = f"{self.training} training, {self.stopped} stopped, {self.diverged} diverged"
        best = f"{self.best_loss:.4g}" + (f" ({self.best_at})" if self.best_at else "")
        return {"members": members, "best_val_loss": best}


class Run(Protocol):
    """A compiled run as the driver sees it."""

    def advance(self, state: Any) -> tuple[Any, Metrics]:
        """One compiled chunk: the new state (the old one's buffers may be donated) and the
        chunk's metrics, on the devices."""

    def observe(self, state: Any, metrics: Metrics) -> tuple[Row, Progress]:
        """The chunk's metrics as NumPy arrays and the run's `Progress`, in one transfer."""


class Scheduler(Protocol):
    """A rule that rewrites the population between chunks (halving, PBT, ...), keeping its
    shape. Its ``log`` is JSON data saved with every checkpoint and given back to ``load``
    on resume, so a resumed run decides as the uninterrupted one would; its ``config`` (JSON
    data: its kind and settings) is part of the run's fingerprint."""

    config: dict[str, Any]

    def __call__(self, state: Any, chunk: int, row: Row) -> Any:
        """The state after chunk number ``chunk`` (1-based) whose record is ``row``."""

    def log(self) -> dict[str, Any]:
        """The scheduler's own state, as JSON data."""

    def load(self, log: dict[str, Any]) -> None:
        """Takes back a ``log`` saved by a checkpoint."""


class Outcome(NamedTuple):
    """What `drive` returns.

    Attributes:
      state: the final state (or the last intact one when interrupted).
      history: one `Row` per chunk run, resumed chunks included.
      interrupted: stopped by Ctrl-C before the end.
      resumed_from: the chunk the run resumed after, or None for a fresh run.
    """

    state: Any
    history: list[Row]
    interrupted: bool
    resumed_from: int | None


def drive(
    run: Run,
    state: Any,
    *,
    chunks: int,
    total_steps: int,
    scheduler: Scheduler | None = None,
    checkpoints: Checkpoints | None = None,
    checkpoint_every: int = 1,
    progress: bool | tqdm = True,
    callback: Callable[[Any, Row], None] | None = None,
) -> Outcome:
    """Runs at most ``chunks`` compiled chunks of ``run`` from ``state``.

    After each chunk: the metrics are recorded, the bar is updated, the ``scheduler`` may
    rewrite the population, a checkpoint is saved every ``checkpoint_every`` chunks (and at the
    end, and on Ctrl-C), and ``callback(state, row)`` runs. The loop ends when every member
    has stopped, when the chunks are spent, or after the chunk in flight on Ctrl-C.

    With ``checkpoints`` holding a checkpoint of this run, the state, history and scheduler
    log are restored from it first, and the loop continues where it stopped: the same chunks
    in the same order, so the result equals the uninterrupted run's.

    Args:
      run: the compiled chunk and its observer.
      state: the state at the start (also the template a checkpoint is restored into).
      chunks: the most chunks to run in all, resumed ones included.
      total_steps: the bar's total.
      scheduler: the hook between chunks, or None.
      checkpoints: where to save and resume from, or None.
      checkpoint_every: chunks between two checkpoints.
      progress: show a tqdm bar (on process 0 of several); or a bar to update (its count so
        far is an offset).
      callback: called after each chunk (the state is donated to the next chunk: copy what
        you keep).

    Returns:
      An `Outcome`.
    """
    history: list[Row] = []
    done, finished, elapsed, resumed_from = 0, False, 0.0, None
    if checkpoints is not None:
        restored = checkpoints.restore(state)
        if restored is not None:
            done, state, record = restored
            resumed_from = done
            history = [_from_json(row) for row in record["history"]]
            finished, elapsed = record["finished"], record["time_s"]
            if scheduler is not None:
                scheduler.load(record["scheduler"])
    if isinstance(progress, tqdm):
        bar, offset, owned = progress, progress.n, contextlib.nullcontext()
    else:
        # One bar for a run of several processes: process 0's.
        bar = tqdm(total=total_steps, disable=not progress or jax.process_index() > 0, unit="step")
        offset, owned = 0, bar
    if history:
        bar.update(offset + history[-1]["step"] - bar.n)
    start = time.perf_counter() - elapsed
    interrupted = False

    def save() -> None:
        if checkpoints is not None:
            record = {
                "history": [_to_json(row) for row in history],
                "finished": finished,
                "time_s": time.perf_counter() - start,
                "scheduler": scheduler.log() if scheduler is not None else {},
            }
            checkpoints.save(done, state, record)

    with owned, Interrupt() as interrupt:
        try:
            while done < chunks and not finished:
                state, metrics = run.advance(state)
                interrupt.armed = True
                row, now = run.observe(state, metrics)
                done += 1
                finished = now.training == 0
                row = {"step": now.step, "time_s": time.perf_counter() - start, **row}
                history.append(row)
                bar.set_postfix(now.postfix(), refresh=False)
                bar.update(offset + min(now.step, total_steps) - bar.n)
                if scheduler is not None:
                    state = scheduler(state, done, row)
                if done % checkpoint_every == 0 or done == chunks or finished:
                    save()
                if callback is not None:
                    callback(state, row)
                if interrupt.requested:
                    interrupted = True
                    break
        except KeyboardInterrupt:
            # Raised inside the loop (no handler of ours, or by a function it calls): keep
            # what was trained if a chunk ran and its state survived the donation.
            if interrupt.requested or not history or not intact(state):
                raise
            interrupted = True
        if interrupted:
            save()
    return Outcome(state, history, interrupted, resumed_from)


def _to_json(row: Row) -> Row:
    return {k: np.asarray(v).tolist() for k, v in row.items()}


def _from_json(row: Row) -> Row:
    return {k: v if k in ("step", "time_s") else np.asarray(v, np.float32) for k, v in row.items()}
