"""Training in compiled chunks: ``lax.scan`` over the steps between two evaluations."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from tqdm.auto import tqdm

from jdl.data import Dataset, minibatch
from jdl.hyperparams import check_count
from jdl.train.boundary import check_data, check_evaluation, check_functions
from jdl.train.checkpoint import Checkpoints
from jdl.train.early_stopping import EarlyStopping, early_stopping
from jdl.train.state import LossFn, Params, TrainState, init_state
from jdl.train.step import batch_step, data_key

EvalFn = Callable[[Params, Dataset], dict[str, jax.Array]]
ChunkFn = Callable[[TrainState, Dataset, Dataset], tuple[TrainState, dict[str, jax.Array]]]


def make_chunk(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    *,
    batch_size: int,
    chunk_steps: int,
    eval_fn: EvalFn,
    early_stopping: EarlyStopping,
    num_steps: int | None = None,
) -> ChunkFn:
    r"""The compiled unit of training: ``chunk_steps`` train steps, one evaluation, one
    early-stopping update.

    .. math::
        s \leftarrow \text{step}^{C}(s), \qquad
        e = \text{eval\_fn}(\theta, D_{val}), \qquad
        \text{stop} \leftarrow \text{es.update}(\text{stop}, e[\text{"loss"}], t, \theta),

    where :math:`\text{step}` is `jdl.train.train_step` scanned :math:`C` = ``chunk_steps``
    times with ``lax.scan`` and :math:`t` counts optimizer steps (so ``patience`` is in
    optimizer steps). ``chunk`` is pure: ``fit`` calls ``jax.jit(chunk)`` from a Python loop,
    a search calls ``jax.jit(jax.vmap(chunk))``; ``tx`` and ``early_stopping`` may close over
    traced hyper-parameters. The batches are those of `jdl.data.minibatch`; each epoch's
    permutation is computed once per chunk rather than once per step.

    Args:
      loss_fn: ``loss_fn(params, batch, key) -> (loss, aux)``.
      tx: the optimizer.
      batch_size: mini-batch size (a Python int).
      chunk_steps: steps per chunk C >= 1 (a Python int).
      eval_fn: ``eval_fn(params, val) -> dict`` of scalars containing ``"loss"``, the
        monitored value.
      early_stopping: the rule from `jdl.train.early_stopping`.
      num_steps: when given, steps at ``t >= num_steps`` are no-ops, so fixed-length chunks
        end a run of any length exactly.

    Returns:
      ``chunk(state, train, val) -> (state, metrics)`` with ``metrics`` a flat dict:
      ``"train_loss"`` (mean training loss over the chunk's active steps; not finite when the
      run blew up in this chunk) and each entry
      ``k`` of ``eval_fn``'s dict as ``"val_" + k`` (``"val_loss"``, ``"val_accuracy"``, ...).

    References:
      jax.example_libraries-style compiled epochs (``lax.scan`` over steps).
    """
    if isinstance(chunk_steps, bool) or not isinstance(chunk_steps, int) or chunk_steps < 1:
        raise ValueError(f"chunk_steps must be a positive int, got {chunk_steps!r}")
    if not callable(eval_fn):
        raise TypeError(f"eval_fn must be callable, got {type(eval_fn).__name__}")
    if not isinstance(early_stopping, EarlyStopping):
        raise TypeError(
            "early_stopping must be built by jdl.train.early_stopping, got "
            f"{type(early_stopping).__name__}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    step_fn = batch_step(loss_fn, tx, num_steps=num_steps)

    def chunk(
        state: TrainState, train: Dataset, val: Dataset
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        draw = _batches(train, data_key(state.key), state.step, batch_size, chunk_steps)

        def scan_body(
            s: TrainState, i: jax.Array
        ) -> tuple[TrainState, tuple[jax.Array, jax.Array]]:
            active = ~s.stop.should_stop
            if num_steps is not None:
                active = active & (s.step < num_steps)
            # A running member is at step state.step + i (a frozen one ignores its batch):
            # drawing by it rather than s.step keeps the batch unbatched under a vmap whose
            # members share the chunk's start step and key (jdl.search), one gather for all.
            s, loss = step_fn(s, draw(state.step + i))
            return s, (loss, active)

        state, (losses, active) = jax.lax.scan(scan_body, state, jnp.arange(chunk_steps))
        n_active = jnp.sum(active)
        train_loss = jnp.where(
            n_active > 0,
            jnp.sum(jnp.where(active, losses, 0.0)) / jnp.maximum(n_active, 1),
            jnp.mean(losses),
        )
        evaluation = eval_fn(state.params, val)
        check_evaluation(evaluation)
        stop = early_stopping.update(state.stop, evaluation["loss"], state.step, state.params)
        metrics = {"train_loss": train_loss}
        metrics.update({f"val_{k}": jnp.asarray(v) for k, v in evaluation.items()})
        return state._replace(stop=stop), metrics

    return chunk


def _batches(
    data: Dataset, key: jax.Array, start: jax.Array, batch_size: int, chunk_steps: int
) -> Callable[[jax.Array], Dataset]:
    """``draw(t)``: the batch ``jdl.data.minibatch(data, key, t, batch_size)`` for the steps
    t in ``[start, start + chunk_steps)`` of a chunk.

    ``minibatch`` computes the permutation of step t's epoch at every step. A chunk touches
    at most ``K = (chunk_steps - 1) // m + 2`` epochs (m batches per epoch), so when K is
    smaller than ``chunk_steps`` their K permutations are computed once, up front, and each
    step slices its batch out of them: the same batches at a fraction of the cost.
    """
    n = jax.tree.leaves(data)[0].shape[0]
    if not 1 <= batch_size <= n:
        # minibatch raises its own error, naming the sizes.
        return lambda t: minibatch(data, key, t, batch_size)
    per_epoch = n // batch_size
    epochs = (chunk_steps - 1) // per_epoch + 2
    if epochs >= chunk_steps:
        return lambda t: minibatch(data, key, t, batch_size)
    first = start // per_epoch
    perms = jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(key, e), n))(
        first + jnp.arange(epochs, dtype=first.dtype)
    )

    def draw(t: jax.Array) -> Dataset:
        row, pos = t // per_epoch - first, (t % per_epoch) * batch_size
        idx = jax.lax.dynamic_slice(perms, (row, pos), (1, batch_size))[0]
        return jax.tree.map(lambda a: jnp.take(a, idx, axis=0), data)

    return draw


class FitResult(NamedTuple):
    """What `fit` returns.

    Attributes:
      state: the final `TrainState` (``state.stop`` tells whether and why it stopped).
      best_params: the parameters at the best monitored value (``state.stop.best_params``): the
        restored model.
      history: one entry per chunk, as Python lists: ``"step"`` (optimizer steps after the
        chunk), ``"time_s"`` (training seconds so far, compilation excluded), ``"train_loss"``
        and ``"val_" + k`` for each entry k of ``eval_fn``'s dict.
    """

    state: TrainState
    best_params: Params
    history: dict[str, list[float]]


def fit(
    loss_fn: LossFn,
    params: Params,
    tx: optax.GradientTransformation,
    train: Dataset,
    val: Dataset,
    *,
    eval_fn: EvalFn,
    num_steps: int,
    batch_size: int,
    eval_every: int = 100,
    early_stopping: EarlyStopping | None = None,
    key: jax.Array | int = 0,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    callback: Callable[[TrainState, dict[str, float]], None] | None = None,
) -> FitResult:
    r"""Trains ``params`` in compiled chunks until ``num_steps`` or early stopping.

    .. math::
        \text{repeat: } (s, e) \leftarrow \text{chunk}(s, D_{train}, D_{val})
        \text{ until } t \ge T \text{ or stop},

    where ``chunk`` (`make_chunk`) runs ``eval_every`` steps in one ``lax.scan``, evaluates on
    the validation data and updates early stopping. The chunk is compiled once, ahead of time,
    for the whole run, with the state's buffers donated; Python only runs between chunks: the
    progress bar (step, train loss, validation metrics), the history, checkpoints and the
    ``callback``.

    With ``checkpoint_dir`` the best parameters are saved whenever they improve and the whole
    state (with the history) every ``checkpoint_every`` chunks and at the end; a call with the
    same arguments resumes from the latest saved state, so a run killed between chunks ends
    with the same parameters as an uninterrupted one.

    Args:
      loss_fn: ``loss_fn(params, batch, key) -> (loss, aux)``; ``key`` is the step's PRNG key
        (dropout and other noise).
      params: the initial parameters theta_0.
      tx: the optimizer.
      train: the training set (mini-batches are drawn from it in compiled code).
      val: the validation set given to ``eval_fn``.
      eval_fn: ``eval_fn(params, val) -> dict`` of scalars containing ``"loss"``, the monitored
        value (``early_stopping`` decides its direction).
      num_steps: the most optimizer steps T.
      batch_size: mini-batch size.
      eval_every: steps per chunk (between two evaluations); the last chunk of a T that is not
        a multiple ends early without recompiling.
      early_stopping: the rule (`jdl.train.early_stopping`, ``patience`` in optimizer
        steps); None keeps the best parameters and stops only on a non-finite loss.
      key: the run's PRNG key or int seed: it fixes the data order and every loss key.
      progress: show a tqdm progress bar.
      checkpoint_dir: where to save and resume from (None: no checkpoints).
      checkpoint_every: save the whole state every this many chunks.
      callback: ``callback(state, metrics)`` after each chunk (after the checkpoint); the state
        is donated to the next chunk, so copy what you keep.

    Returns:
      `FitResult` ``(state, best_params, history)``.

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
    check_count("num_steps", num_steps)
    check_count("eval_every", eval_every)
    check_count("checkpoint_every", checkpoint_every)
    for name, data in (("train", train), ("val", val)):
        if not isinstance(data, Dataset):
            raise TypeError(f"{name} must be a jdl.data.Dataset, got {type(data).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if early_stopping is None:
        early_stopping = _never_stops(num_steps)
    chunk = make_chunk(
        loss_fn,
        tx,
        batch_size=batch_size,
        chunk_steps=min(int(eval_every), int(num_steps)),
        eval_fn=eval_fn,
        early_stopping=early_stopping,
        num_steps=int(num_steps),
    )
    check_data(train, val, batch_size)
    state = init_state(params, tx, early_stopping, key)
    check_functions(loss_fn, eval_fn, state, train, val, batch_size)
    history: dict[str, list[float]] = {}
    ckpt = None if checkpoint_dir is None else Checkpoints(checkpoint_dir)
    try:
        if ckpt is not None:
            restored = ckpt.restore(state)
            if restored is not None:
                state, history = restored
        if int(state.step) < num_steps and not bool(state.stop.should_stop):
            compiled = jax.jit(chunk, donate_argnums=0).lower(state, train, val).compile()
            state = _run(
                compiled,
                state,
                train,
                val,
                history,
                int(num_steps),
                progress,
                ckpt,
                checkpoint_every,
                callback,
            )
    finally:
        if ckpt is not None:
            ckpt.close()
    return FitResult(state, state.stop.best_params, history)


def _run(
    compiled: Callable[[TrainState, Dataset, Dataset], tuple[TrainState, dict[str, jax.Array]]],
    state: TrainState,
    train: Dataset,
    val: Dataset,
    history: dict[str, list[float]],
    num_steps: int,
    progress: bool,
    ckpt: Checkpoints | None,
    checkpoint_every: int,
    callback: Callable[[TrainState, dict[str, float]], None] | None,
) -> TrainState:
    """The Python loop between compiled chunks: history, progress bar, checkpoints."""
    step, stopped = int(state.step), bool(state.stop.should_stop)
    best_step = int(state.stop.best_step)
    elapsed = history["time_s"][-1] if history.get("time_s") else 0.0
    start = time.perf_counter() - elapsed
    chunks = 0
    with tqdm(total=num_steps, initial=step, disable=not progress, unit="step") as bar:
        while step < num_steps and not stopped:
            state, metrics = compiled(state, train, val)
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            new_step, stopped = int(state.step), bool(state.stop.should_stop)
            record = {"step": new_step, "time_s": time.perf_counter() - start, **metrics}
            for k, v in record.items():
                history.setdefault(k, []).append(v)
            bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()}, refresh=False)
            bar.update(new_step - step)
            step, chunks = new_step, chunks + 1
            if ckpt is not None:
                if int(state.stop.best_step) != best_step:
                    best_step = int(state.stop.best_step)
                    ckpt.save_best(state.stop.best_params, best_step)
                if chunks % checkpoint_every == 0 or step >= num_steps or stopped:
                    ckpt.save(state, history)
            if callback is not None:
                callback(state, metrics)
    return state


def _never_stops(num_steps: int) -> EarlyStopping:
    """Keeps the best parameters; stops only on a non-finite monitored value."""
    return early_stopping(num_steps + 1)
