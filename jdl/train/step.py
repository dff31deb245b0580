"""One optimizer step as a pure function of the state: batch -> value_and_grad -> update."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jdl.data import Dataset, minibatch
from jdl.train.model_state import loss_and_grad
from jdl.train.state import TrainState
from jdl.types import LossFn

StepFn = Callable[[TrainState, Dataset], tuple[TrainState, jax.Array]]


def data_key(key: jax.Array) -> jax.Array:
    """The key of the run's data order: ``fold_in(key, 0)``."""
    return jax.random.fold_in(key, 0)


def step_key(key: jax.Array, step: jax.Array) -> jax.Array:
    """The loss function's key at step t: ``fold_in(fold_in(key, 1), t)``."""
    return jax.random.fold_in(jax.random.fold_in(key, 1), step)


def batch_step(
    loss_fn: LossFn, optimizer: optax.GradientTransformation, *, steps: int | None = None
) -> StepFn:
    r"""The gradient step on a given mini-batch :math:`B_t` (`train_step` without the drawing).

    .. math::
        (L_t, g_t) = (L, \nabla_\theta L)(\theta_t; B_t, k_t), \quad
        (u_t, s_{t+1}) = \text{optimizer.update}(g_t, s_t, \theta_t), \quad
        \theta_{t+1} = \theta_t + u_t, \quad t \leftarrow t + 1,

    with the loss key :math:`k_t = \text{fold\_in}(\text{fold\_in}(k, 1), t)` derived from
    the run's key. A model with state (``state.model_state`` not None) is trained with the
    stateful contract, ``(L_t, (a_t, \phi_{t+1})), g_t = (\ell, \nabla_\theta \ell)(\theta_t,
    \phi_t; B_t, k_t)``, and carries its new state :math:`\phi_{t+1}` (BatchNorm's running
    statistics) with the parameters. A frozen run (``state.stop.should_stop`` set, or
    ``t >= steps``) is returned unchanged (selected with ``jnp.where``, so a population under
    ``vmap`` freezes member by member). A non-finite :math:`L_t` does not apply the update
    (nor change the model state); it sets ``should_stop`` and ``diverged`` instead.

    Args:
      loss_fn: ``loss_fn(params, batch, key) -> (loss, aux)``, or for a state with a model
        state ``loss_fn(params, model_state, batch, key) -> (loss, (aux, model_state))``.
      optimizer: the optimizer (its hyper-parameters may be traced values).
      steps: when given, steps at ``t >= steps`` are no-ops.

    Returns:
      ``step_fn(state, batch) -> (state, loss)``.

    References:
      optax's ``GradientTransformation`` / ``apply_updates`` protocol.
    """

    def step_fn(state: TrainState, batch: Dataset) -> tuple[TrainState, jax.Array]:
        # The contract follows the state's structure (None: stateless), fixed when tracing.
        grad_fn = loss_and_grad(loss_fn, state.model_state)
        key = step_key(state.key, state.step)
        (loss, _aux, model_state), grads = grad_fn(state.params, state.model_state, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(loss)
        frozen = state.stop.should_stop
        if steps is not None:
            frozen = frozen | (state.step >= steps)
        keep = frozen | ~finite
        step, params, opt_state, model_state = jax.tree.map(
            lambda old, upd: jnp.where(keep, old, upd),
            (state.step, state.params, state.opt_state, state.model_state),
            (state.step + 1, params, opt_state, model_state),
        )
        blown = ~frozen & ~finite
        stop = state.stop._replace(
            should_stop=state.stop.should_stop | blown, diverged=state.stop.diverged | blown
        )
        return TrainState(step, params, opt_state, stop, state.key, model_state), loss

    return step_fn


def train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    batch_size: int,
    steps: int | None = None,
) -> StepFn:
    r"""The training step: one mini-batch gradient step, pure and jit/vmap-safe.

    .. math::
        B_t = \text{minibatch}(D, k_{data}, t, B), \quad
        (L_t, g_t) = (L, \nabla_\theta L)(\theta_t; B_t, k_t), \quad
        (u_t, s_{t+1}) = \text{optimizer.update}(g_t, s_t, \theta_t), \quad
        \theta_{t+1} = \theta_t + u_t,

    with :math:`k_{data} = \text{fold\_in}(k, 0)` and
    :math:`k_t = \text{fold\_in}(\text{fold\_in}(k, 1), t)` derived from the run's key
    (`jdl.data.minibatch` draws batch t of the permutation of its epoch).

    A frozen run (``state.stop.should_stop`` set, or ``t >= steps``) is returned unchanged
    (selected with ``jnp.where``, so a population under ``vmap`` freezes member by member).
    A non-finite :math:`L_t` does not apply the update; it sets ``should_stop`` and
    ``diverged`` instead. A model state is carried as in `batch_step`.

    Args:
      loss_fn: ``loss_fn(params, batch, key) -> (loss, aux)``, or the stateful contract of
        `batch_step`.
      optimizer: the optimizer (its hyper-parameters may be traced values).
      batch_size: mini-batch size B (a Python int: it fixes a shape).
      steps: when given, steps at ``t >= steps`` are no-ops (whole chunks of a fixed
        length can then end a run of any length).

    Returns:
      ``step_fn(state, data) -> (state, loss)``; ``loss`` is :math:`L_t` (evaluated also for a
      frozen run, whose state it does not change).

    References:
      L. Bottou, "Stochastic Gradient Descent Tricks", 2012; optax's
      ``GradientTransformation`` / ``apply_updates`` protocol.
    """
    update = batch_step(loss_fn, optimizer, steps=steps)

    def step_fn(state: TrainState, data: Dataset) -> tuple[TrainState, jax.Array]:
        return update(state, minibatch(data, data_key(state.key), state.step, batch_size))

    return step_fn
