"""An independent reference for jdl's training: the plain optax loop a user writes by hand.

It shares only `jdl.data.minibatch` with jdl (the batches the contract names) and follows the
documented contract of `jdl.train.TrainState`: batch t is ``minibatch(train, fold_in(key, 0), t,
B)``, the loss's key at step t is ``fold_in(fold_in(key, 1), t)``, the update is
``optax.apply_updates`` of ``tx.update``, and the run stops before applying the update of the
first non-finite loss. `tests/train/test_reference.py` and `tests/search/test_reference.py`
compare `fit` and a search member with it.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jdl.data import Dataset, minibatch

N, FEATURES, HIDDEN = 40, 4, 8
BATCH = 8  # 5 batches per epoch: 12 steps cross two epoch boundaries
STEPS, EVERY = 12, 5  # chunks of 5, 5 and a partial one of 2
SEED = 3
RTOL, ATOL = 1e-5, 1e-6


def _data(key: jax.Array, n: int) -> Dataset:
    kx, kn = jax.random.split(key)
    x = jax.random.normal(kx, (n, FEATURES))
    y = jnp.sin(x @ jnp.arange(1.0, FEATURES + 1.0))[:, None] + 0.1 * jax.random.normal(kn, (n, 1))
    return Dataset(x, y)


TRAIN = _data(jax.random.key(100), N)
VAL = _data(jax.random.key(101), 16)


def init_params(key: jax.Array) -> dict[str, jax.Array]:
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (FEATURES, HIDDEN)) / 2.0,
        "b1": jnp.zeros((1, HIDDEN)),
        "w2": jax.random.normal(k2, (HIDDEN, 1)) / 3.0,
    }


def apply(params: dict, x: jax.Array) -> jax.Array:
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"]


def loss_fn(params: dict, batch: Dataset, key: jax.Array, nan_above: float = 2.0):
    """Squared error on inputs with noise drawn from ``key`` (so the trajectory depends on every
    step's key); NaN when a uniform number drawn from ``key`` exceeds ``nan_above`` (never for
    the default 2)."""
    k_noise, k_blow = jax.random.split(key)
    x = batch.x + 0.3 * jax.random.normal(k_noise, batch.x.shape)
    loss = jnp.mean((apply(params, x) - batch.y) ** 2)
    return jnp.where(jax.random.uniform(k_blow) > nan_above, jnp.nan, loss), {}


def eval_fn(params: dict, data: Dataset) -> dict[str, jax.Array]:
    return {"loss": jnp.mean((apply(params, data.x) - data.y) ** 2)}


class Reference(NamedTuple):
    params: dict
    opt_state: optax.OptState
    step: int  # steps applied: the first non-finite loss's step when it diverged
    diverged: bool


def plain_loop(loss_fn, params, tx: optax.GradientTransformation, key: jax.Array, steps: int):
    """``steps`` steps of the hand-written loop from ``params`` with the run key ``key``."""
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    opt_state = tx.init(params)
    data_key, loss_keys = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    for t in range(steps):
        batch = minibatch(TRAIN, data_key, t, BATCH)
        (loss, _), grads = grad_fn(params, batch, jax.random.fold_in(loss_keys, t))
        if not np.isfinite(float(loss)):
            return Reference(params, opt_state, t, True)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    return Reference(params, opt_state, steps, False)
