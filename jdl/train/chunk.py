"""The compiled unit of training: ``lax.scan`` over the steps between two evaluations."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jdl.data import Dataset, minibatch
from jdl.train.early_stopping import EarlyStopping
from jdl.train.model_state import evaluate
from jdl.train.state import TrainState
from jdl.train.step import batch_step, data_key
from jdl.types import EvalFn, LossFn, Metrics

__all__ = ["ChunkFn", "make_chunk"]

ChunkFn = Callable[[TrainState, Dataset, Dataset], tuple[TrainState, Metrics]]
"""``chunk(state, train, val) -> (state, metrics)``."""


def make_chunk(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    batch_size: int,
    eval_every: int,
    eval_fn: EvalFn,
    early_stopping: EarlyStopping,
    steps: int | None = None,
) -> ChunkFn:
    r"""The compiled unit of training: ``eval_every`` train steps, one evaluation, one
    early-stopping update.

    .. math::
        s \leftarrow \text{step}^{C}(s), \qquad
        e = \text{eval\_fn}(\theta, D_{val}), \qquad
        \text{stop} \leftarrow \text{es.update}(\text{stop}, e[\text{"loss"}], t, \theta),

    (with the model state :math:`\phi`, ``eval_fn(theta, phi, D_val)`` and ``es.update(...,
    theta, phi)``, for a model that has one), where :math:`\text{step}` is
    `jdl.train.train_step` scanned :math:`C` = ``eval_every``
    times with ``lax.scan`` and :math:`t` counts optimizer steps (so ``patience`` is in
    optimizer steps). ``chunk`` is pure: `jdl.run.fit` compiles ``jax.jit(chunk)``, a search
    ``jax.jit(jax.vmap(chunk))``, and the run driver calls it between chunks; ``optimizer``
    and ``early_stopping`` may close over traced hyper-parameters. The batches are those of
    `jdl.data.minibatch`; each epoch's permutation is computed once per chunk rather than once
    per step.

    The arguments are not checked here: `jdl.run.RunSpec` checks them once, at the public
    boundary.

    Args:
      loss_fn: ``loss_fn(params, batch, key) -> (loss, aux)``; for a state with a model state
        (`jdl.types.StatefulLossFn`) ``loss_fn(params, model_state, batch, key) -> (loss,
        (aux, model_state))``.
      optimizer: the optimizer.
      batch_size: mini-batch size (a Python int).
      eval_every: steps per chunk C >= 1 (a Python int).
      eval_fn: ``eval_fn(params, val) -> dict`` of scalars containing ``"loss"``, the
        monitored value (``eval_fn(params, model_state, val)`` with a model state).
      early_stopping: the rule from `jdl.train.early_stopping`.
      steps: when given, steps at ``t >= steps`` are no-ops, so fixed-length chunks
        end a run of any length exactly.

    Returns:
      ``chunk(state, train, val) -> (state, metrics)`` with ``metrics`` a flat dict:
      ``"train_loss"`` (mean training loss over the chunk's active steps; not finite when the
      run blew up in this chunk) and each entry
      ``k`` of ``eval_fn``'s dict as ``"val_" + k`` (``"val_loss"``, ``"val_accuracy"``, ...).

    References:
      jax.example_libraries-style compiled epochs (``lax.scan`` over steps).
    """
    step_fn = batch_step(loss_fn, optimizer, steps=steps)

    def chunk(
        state: TrainState, train: Dataset, val: Dataset
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        draw = _batches(train, data_key(state.key), state.step, batch_size, eval_every)

        def scan_body(
            s: TrainState, i: jax.Array
        ) -> tuple[TrainState, tuple[jax.Array, jax.Array]]:
            active = ~s.stop.should_stop
            if steps is not None:
                active = active & (s.step < steps)
            # A running member is at step state.step + i (a frozen one ignores its batch):
            # drawing by it rather than s.step keeps the batch unbatched under a vmap whose
            # members share the chunk's start step and key (jdl.search), one gather for all.
            s, loss = step_fn(s, draw(state.step + i))
            return s, (loss, active)

        state, (losses, active) = jax.lax.scan(scan_body, state, jnp.arange(eval_every))
        n_active = jnp.sum(active)
        train_loss = jnp.where(
            n_active > 0,
            jnp.sum(jnp.where(active, losses, 0.0)) / jnp.maximum(n_active, 1),
            jnp.mean(losses),
        )
        evaluation = evaluate(eval_fn, state.params, state.model_state, val)
        stop = early_stopping.update(
            state.stop, evaluation["loss"], state.step, state.params, state.model_state
        )
        metrics = {"train_loss": train_loss}
        metrics.update({f"val_{k}": jnp.asarray(v) for k, v in evaluation.items()})
        return state._replace(stop=stop), metrics

    return chunk


def _batches(
    data: Dataset, key: jax.Array, start: jax.Array, batch_size: int, eval_every: int
) -> Callable[[jax.Array], Dataset]:
    """``draw(t)``: the batch ``jdl.data.minibatch(data, key, t, batch_size)`` for the steps
    t in ``[start, start + eval_every)`` of a chunk.

    ``minibatch`` computes the permutation of step t's epoch at every step. A chunk touches
    at most ``K = (eval_every - 1) // m + 2`` epochs (m batches per epoch), so when K is
    smaller than ``eval_every`` their K permutations are computed once, up front, and each
    step slices its batch out of them: the same batches at a fraction of the cost.
    """
    n = jax.tree.leaves(data)[0].shape[0]
    if not 1 <= batch_size <= n:
        # minibatch raises its own error, naming the sizes.
        return lambda t: minibatch(data, key, t, batch_size)
    per_epoch = n // batch_size
    epochs = (eval_every - 1) // per_epoch + 2
    if epochs >= eval_every:
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
