"""The state of one training run as a pytree: everything a compiled chunk reads and writes."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jdl.train.early_stopping import EarlyStopping, EarlyStoppingState
from jdl.types import ModelState, Params, Variables


class TrainState(NamedTuple):
    """Everything that changes during a run; a pytree, so it passes through ``jit`` and ``vmap``.

    The run's randomness is a pure function of ``key`` and ``step``: the data order uses
    ``fold_in(key, 0)`` and the loss function's key at step t is
    ``fold_in(fold_in(key, 1), t)``, so the same key gives the same run, and a run resumed from
    a saved state continues exactly as if it had not stopped.

    Attributes:
      step: optimizer steps taken t.
      params: the model parameters theta_t.
      opt_state: the optimizer's state.
      stop: the early-stopping state (best parameters, deadline, should_stop, diverged).
      key: the run's PRNG key (never split and stored: per-step keys are derived).
      model_state: the model's state beyond its parameters phi_t (BatchNorm's running
        statistics), updated by every training step; None for a model without state (last,
        with a default, so that states built by position keep working).
    """

    step: jax.Array  # shape=(), int32
    params: Params
    opt_state: optax.OptState
    stop: EarlyStoppingState
    key: jax.Array  # a PRNG key
    model_state: ModelState = None


def init_state(
    params: Params,
    optimizer: optax.GradientTransformation,
    early_stopping: EarlyStopping,
    key: jax.Array | int,
) -> TrainState:
    """The state of a run at step 0: ``TrainState(0, theta_0, optimizer.init(theta_0),
    es.init(theta_0, phi_0), key, phi_0)``.

    Args:
      params: the initial parameters theta_0 (a pytree of arrays), or a model's
        `jdl.types.Variables` ``(theta_0, phi_0)`` (`jdl.models.stateful`): its model state phi_0
        is carried in ``model_state``.
      optimizer: the optimizer.
      early_stopping: the early-stopping rule (see `jdl.train.early_stopping`).
      key: a PRNG key (``jax.random.key(seed)``) or an int seed.

    Returns:
      A `TrainState`. It shares no buffer with ``params``: a compiled chunk may donate it.

    Raises:
      TypeError: ``optimizer`` or ``early_stopping`` of the wrong kind, or ``key`` not a key
        or an int.
    """
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}"
        )
    if not isinstance(early_stopping, EarlyStopping):
        raise TypeError(
            "early_stopping must be built by jdl.train.early_stopping, got "
            f"{type(early_stopping).__name__}"
        )
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        key = jax.random.key(int(key))
    elif not isinstance(key, jax.Array):
        raise TypeError(f"key must be a PRNG key or an int seed, got {type(key).__name__}")
    model_state = None
    if isinstance(params, Variables):
        params, model_state = params
        if model_state is None:
            raise TypeError("Variables.model_state must be a pytree of arrays, got None")
        model_state = jax.tree.map(jnp.array, model_state)
    # Own copies of the parameters, state and key: a compiled chunk may donate the state.
    params = jax.tree.map(jnp.array, params)
    copy = jax.tree.map(jnp.array, (params, model_state))
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    key = jax.random.clone(key) if typed else jnp.array(key)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        stop=early_stopping.init(*copy),
        key=key,
        model_state=model_state,
    )
