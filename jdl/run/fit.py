"""`fit`: one training run on the run driver, with its own un-vmapped compiled chunk."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from jdl.data import Dataset
from jdl.hyperparams import check_count
from jdl.run.checkpoint import Checkpoints, fingerprint
from jdl.run.driver import Progress, Row, drive
from jdl.run.spec import RunSpec
from jdl.run.tensorboard import TensorBoard
from jdl.train.early_stopping import EarlyStopping
from jdl.train.state import TrainState, init_state
from jdl.types import EvalFn, LossFn, Metrics, ModelState, Params

__all__ = ["FitResult", "fit"]


class FitResult(NamedTuple):
    """What `fit` returns.

    Attributes:
      state: the final `TrainState` (``state.stop`` tells whether and why it stopped).
      best_params: the parameters at the best monitored value (``state.stop.best_params``): the
        restored model.
      history: one entry per chunk, as Python lists: ``"step"`` (optimizer steps after the
        chunk), ``"time_s"`` (seconds since the start, compilation excluded), ``"train_loss"``
        and ``"val_" + k`` for each entry k of ``eval_fn``'s dict.
      interrupted: stopped by Ctrl-C; ``state`` holds what was trained until then.
      best_model_state: the model state saved with ``best_params`` (running statistics;
        ``state.stop.best_model_state``); None for a model without state.
    """

    state: TrainState
    best_params: Params
    history: dict[str, list[float]]
    interrupted: bool = False
    best_model_state: ModelState = None


class _Single:
    """One run as the driver sees it: its compiled chunk, called on the placed data."""

    def __init__(self, compiled: Callable, train: Dataset, val: Dataset):
        self._compiled, self._train, self._val = compiled, train, val

    def advance(self, state: TrainState) -> tuple[TrainState, Metrics]:
        return self._compiled(state, self._train, self._val)

    def observe(self, state: TrainState, metrics: Metrics) -> tuple[Row, Progress]:
        stop = state.stop
        host = jax.device_get(
            (metrics, state.step, stop.should_stop, stop.diverged, stop.best_metric)
        )
        metrics, step, stopped, diverged, best = host
        row = {k: float(v) for k, v in metrics.items()}
        progress = Progress(
            step=int(step),
            training=int(not stopped),
            stopped=int(stopped and not diverged),
            diverged=int(diverged),
            best_loss=float(best) if np.isfinite(best) else float("inf"),
        )
        return row, progress


def fit(
    loss_fn: LossFn,
    params: Params,
    optimizer: optax.GradientTransformation,
    train: Dataset,
    val: Dataset,
    *,
    eval_fn: EvalFn,
    steps: int,
    batch_size: int,
    eval_every: int = 100,
    early_stopping: EarlyStopping | None = None,
    key: jax.Array | int = 0,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    callback: Callable[[TrainState, dict[str, float]], None] | None = None,
    tensorboard: str | os.PathLike | None = None,
) -> FitResult:
    r"""Trains ``params`` in compiled chunks until ``steps`` or early stopping.

    .. math::
        \text{repeat: } (s, e) \leftarrow \text{chunk}(s, D_{train}, D_{val})
        \text{ until } t \ge T \text{ or stop},

    where ``chunk`` (`jdl.train.make_chunk`) runs ``eval_every`` steps in one ``lax.scan``,
    evaluates on the validation data and updates early stopping. The chunk is compiled once,
    ahead of time, for the whole run, with the state's buffers donated; the run driver
    (`jdl.run.drive`) calls it and owns what happens between chunks: the progress bar, the
    history, checkpoints, Ctrl-C and the ``callback``.

    With ``checkpoint_dir`` the whole state (with the history) is saved every
    ``checkpoint_every`` chunks, at the end and on Ctrl-C; a call with the same arguments
    resumes from the latest checkpoint, so a run killed at any moment ends with the same
    parameters as an uninterrupted one. A checkpoint of a run with other arguments (model,
    loss, optimizer, data, steps, key) is refused with a ValueError.

    Ctrl-C stops the run after the chunk in flight and returns what was trained, with
    ``interrupted=True`` (a second Ctrl-C aborts).

    Args:
      loss_fn: ``loss_fn(params, batch, key) -> (loss, aux)``; ``key`` is the step's PRNG key
        (dropout and other noise).
      params: the initial parameters theta_0, or the `jdl.types.Variables` ``(theta_0, phi_0)``
        of a model with state (`jdl.models.stateful`): the state phi_0 (BatchNorm's running
        statistics) is then carried by every step, evaluated with, saved with the best
        parameters and checkpointed, and ``loss_fn``/``eval_fn`` follow the stateful
        contract (`jdl.types.StatefulLossFn`, `jdl.types.StatefulEvalFn`).
      optimizer: the optimizer, an ``optax.GradientTransformation``.
      train: the training set (mini-batches are drawn from it in compiled code).
      val: the validation set given to ``eval_fn``.
      eval_fn: ``eval_fn(params, val) -> dict`` of scalars containing ``"loss"``, the monitored
        value (``early_stopping`` decides its direction).
      steps: the most optimizer steps T.
      batch_size: mini-batch size.
      eval_every: steps per chunk (between two evaluations); the last chunk of a T that is not
        a multiple ends early without recompiling.
      early_stopping: the rule (`jdl.train.early_stopping`, ``patience`` in optimizer
        steps); None keeps the best parameters and stops only on a non-finite loss.
      key: the run's PRNG key or int seed: it fixes the data order and every loss key.
      progress: show a tqdm progress bar.
      checkpoint_dir: where to save and resume from (None: no checkpoints).
      checkpoint_every: save the whole state every this many chunks.
      callback: ``callback(state, record)`` after each chunk (after the checkpoint), with the
        chunk's ``record``: ``"step"``, ``"time_s"`` and its metrics; the state is donated to
        the next chunk, so copy what you keep.
      tensorboard: a folder to write the curves to, between chunks, as TensorBoard event
        files (`jdl.run.TensorBoard`; needs the extra ``jdl[tensorboard]``).

    Returns:
      `FitResult` ``(state, best_params, history, interrupted)``.

    Raises:
      ValueError / TypeError: bad step counts, data or components, before anything compiles:
        train and val of different feature shapes or label kinds; a ``loss_fn`` that fails on
        one batch (run abstractly with ``jax.eval_shape``, as is ``eval_fn`` on ``val``), does
        not return a pair (scalar floating-point loss, dict aux) or cannot be differentiated;
        an ``eval_fn`` that fails or does not return a dict of scalars containing ``"loss"``.
        A failing function's error names it, the shapes it was given and a summary of
        ``params``, then the original message on one line (the original is its ``__cause__``;
        a TypeError stays a TypeError, any other error becomes a ValueError).

    References:
      jax.example_libraries-style compiled epochs; Keras ``fit`` with ``EarlyStopping`` and
      ``restore_best_weights``; orbax-checkpoint for the checkpoints.
    """
    check_count("steps", steps)
    check_count("eval_every", eval_every)
    check_count("checkpoint_every", checkpoint_every)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}"
        )
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise TypeError(
            "early_stopping must be built by jdl.train.early_stopping, got "
            f"{type(early_stopping).__name__}"
        )
    spec = RunSpec(
        optimizer,
        eval_fn,
        batch_size,
        min(eval_every, steps),
        early_stopping,
        loss_fn=loss_fn,
    )
    state = init_state(params, optimizer, spec.rule(), key)
    spec.check({}, state.params, state.key, train, val, state.model_state)
    train, val = jax.tree.map(jax.numpy.asarray, (train, val))
    lowered = jax.jit(spec.chunk({}, steps), donate_argnums=0).lower(state, train, val)
    ckpt = None
    if checkpoint_dir is not None:
        print_ = fingerprint(
            program=lowered,
            steps=steps,
            eval_every=eval_every,
            batch_size=batch_size,
            data=[train.x, train.y, val.x, val.y],
            params=jax.tree.leaves(params),  # with the model state of Variables
            key=np.asarray(jax.random.key_data(state.key)),
        )
        ckpt = Checkpoints(checkpoint_dir, fingerprint=print_)
    board = None if tensorboard is None else TensorBoard(tensorboard, [(".", {})])
    hooks = [f for f in (board, callback) if f is not None]
    try:
        outcome = drive(
            _Single(lowered.compile(), train, val),
            state,
            chunks=-(-steps // spec.eval_every),
            total_steps=steps,
            checkpoints=ckpt,
            checkpoint_every=checkpoint_every,
            progress=progress,
            callback=(lambda state, row: [f(state, row) for f in hooks]) if hooks else None,
        )
    finally:
        if ckpt is not None:
            ckpt.close()
        if board is not None:
            board.finish({})
    history: dict[str, list[Any]] = {}
    for row in outcome.history:
        for k, v in row.items():
            history.setdefault(k, []).append(float(v) if k != "step" else int(v))
    state = outcome.state
    stop = state.stop
    return FitResult(state, stop.best_params, history, outcome.interrupted, stop.best_model_state)
