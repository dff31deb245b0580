"""Training in compiled chunks: ``lax.scan`` over the steps between two evaluations."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jdl.data import Dataset
from jdl.train.early_stopping import EarlyStopping
from jdl.train.state import LossFn, Params, TrainState
from jdl.train.step import train_step

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
    traced hyper-parameters.

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
      ``"train_loss"`` (mean training loss over the chunk's active steps) and each entry
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
    step_fn = train_step(loss_fn, tx, batch_size=batch_size, num_steps=num_steps)

    def chunk(
        state: TrainState, train: Dataset, val: Dataset
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        def scan_body(s: TrainState, _: None) -> tuple[TrainState, tuple[jax.Array, jax.Array]]:
            active = ~s.stop.should_stop
            if num_steps is not None:
                active = active & (s.step < num_steps)
            s, loss = step_fn(s, train)
            return s, (loss, active)

        state, (losses, active) = jax.lax.scan(scan_body, state, None, length=chunk_steps)
        n_active = jnp.sum(active)
        train_loss = jnp.where(
            n_active > 0,
            jnp.sum(jnp.where(active, losses, 0.0)) / jnp.maximum(n_active, 1),
            jnp.mean(losses),
        )
        evaluation = eval_fn(state.params, val)
        if not isinstance(evaluation, dict) or "loss" not in evaluation:
            raise ValueError(
                "eval_fn must return a dict containing 'loss' (the monitored value), got "
                f"{type(evaluation).__name__}"
                + (f" with keys {sorted(evaluation)}" if isinstance(evaluation, dict) else "")
            )
        stop = early_stopping.update(state.stop, evaluation["loss"], state.step, state.params)
        metrics = {"train_loss": train_loss}
        metrics.update({f"val_{k}": jnp.asarray(v) for k, v in evaluation.items()})
        return state._replace(stop=stop), metrics

    return chunk
