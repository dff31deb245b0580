"""What a search writes while it trains, one slice of configurations at a time: its
checkpoints (with the fingerprint of its configuration, compared across processes) and its
TensorBoard runs (one per member, with the HParams summary at the end)."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

import jax
import numpy as np

from jdl.data import Dataset
from jdl.run import Checkpoints, Scheduler, fingerprint
from jdl.run.tensorboard import TensorBoard
from jdl.search.distributed import check_same
from jdl.search.grid import Population
from jdl.search.programs import SearchState

if TYPE_CHECKING:
    from jdl.search.search import Search

__all__ = ["final_metrics", "slice_board", "slice_checkpoints"]


def slice_checkpoints(
    search: Search,
    folder: str | None,
    pop: Population,
    state: SearchState,
    train: Dataset,
    val: Dataset,
    steps: int,
    scheduler: Scheduler | None,
    own_steps: bool = False,
) -> contextlib.AbstractContextManager[Checkpoints | None]:
    """The checkpoints of one slice's run of ``search``, with the fingerprint of its
    configuration; with several processes, refuses a run whose processes disagree on it
    (`check_same`)."""
    if folder is None and jax.process_count() == 1:
        return contextlib.nullcontext()
    # What the processes must agree on (checked when there are several), and with the
    # program, what makes a checkpoint this run's.
    print_ = fingerprint(
        hparams=[pop.hparams[k] for k in sorted(pop.hparams)],
        names=sorted(pop.hparams),
        seeds=pop.seeds,
        steps=steps,
        eval_every=search.eval_every,
        batch_size=search.spec.batch_size,
        data=[train.x, train.y, val.x, val.y],
        params=jax.tree.leaves(search.seed_params(pop)),
        devices=search.num_devices,
        scheduler=None if scheduler is None else scheduler.config,
    )
    if folder is None:
        check_same(print_)
        return contextlib.nullcontext()
    place = search.place(train, val)
    print_ = fingerprint(program=search.lowered_advance(state, *place, steps, own_steps)) | print_
    check_same(print_)
    checkpoints = Checkpoints(folder, fingerprint=print_)
    try:
        checkpoints.verify()
    except ValueError:
        checkpoints.close()
        raise
    return checkpoints


def slice_board(logdir: str | os.PathLike, pop: Population, size: int) -> TensorBoard:
    """The TensorBoard writer of a slice of ``size`` configurations (padding not written)."""
    members = []
    for seed in pop.seeds:
        for h in range(size):
            if h >= pop.num_configs:
                members.append(None)
                continue
            config = pop.config(h)
            name = ",".join(f"{k}={v:.4g}" for k, v in config.items()) + f",seed={int(seed)}"
            members.append((name, {**config, "seed": int(seed)}))
    return TensorBoard(logdir, members)


def final_metrics(piece: dict, size: int) -> dict[str, np.ndarray]:
    """A slice's final metrics for the HParams dashboard, (S, size) with NaN on the padding:
    the best validation (and test) metrics, and the last training loss."""
    train = piece["train"]
    metrics = {"best_val_loss": train[2], "steps": train[0].astype(np.float64)}
    metrics.update({f"best_{k}": v for k, v in piece["best"].items()})
    metrics["final_train_loss"] = piece["final"]["train_loss"]
    return {
        k: np.pad(
            np.asarray(v, np.float64), ((0, 0), (0, size - v.shape[1])), constant_values=np.nan
        )
        for k, v in metrics.items()
    }
