"""An independent reference for models with state: the ``nnx.jit`` loop a Flax user writes by
hand for a BatchNorm model (``nnx.Optimizer``, ``nnx.value_and_grad``, ``model.eval()``).

It shares only `jdl.data.minibatch` with jdl and follows the documented contract of
`jdl.train.TrainState`: batch t is ``minibatch(train, fold_in(key, 0), t, B)`` and the dropout
key of step t is ``fold_in(fold_in(key, 1), t)``. `tests/run/test_model_state.py` and
`tests/search/test_model_state.py` compare `fit` and a search member with it.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jdl.data import Dataset, minibatch

N, FEATURES, HIDDEN, CLASSES = 48, 6, 8, 3
BATCH, STEPS, EVERY, SEED = 12, 14, 5, 3  # chunks of 5, 5 and a partial one of 4
RTOL, ATOL = 1e-5, 1e-6


def _data(key: jax.Array, n: int) -> Dataset:
    kx, kn = jax.random.split(key)
    x = 2.0 * jax.random.normal(kx, (n, FEATURES)) + 1.0  # BatchNorm has work to do
    score = x @ jnp.linspace(-1.0, 1.0, FEATURES) + 0.3 * jax.random.normal(kn, (n,))
    y = jnp.digitize(score, jnp.quantile(score, jnp.array([1 / 3, 2 / 3]))).astype(jnp.int32)
    return Dataset(x, y)


TRAIN = _data(jax.random.key(100), N)
VAL = _data(jax.random.key(101), 24)


class BatchNormMLP(nnx.Module):
    """x -> Linear (no bias: BatchNorm's shift replaces it) -> BatchNorm -> relu -> Dropout ->
    Linear."""

    def __init__(self, *, rngs: nnx.Rngs, dropout: float = 0.2):
        self.linear = nnx.Linear(FEATURES, HIDDEN, use_bias=False, rngs=rngs)
        self.norm = nnx.BatchNorm(HIDDEN, momentum=0.8, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)
        self.out = nnx.Linear(HIDDEN, CLASSES, rngs=rngs)

    def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        h = nnx.relu(self.norm(self.linear(x)))
        return self.out(self.dropout(h, rngs=rngs))


def model(key: jax.Array) -> BatchNormMLP:
    return BatchNormMLP(rngs=nnx.Rngs(params=key))


class Reference(NamedTuple):
    params: dict  # the final parameters, as nnx.to_pure_dict
    stats: dict  # the final running statistics
    val_loss: list  # the validation loss (evaluation mode) after each chunk
    saved: list  # (params, stats) after each chunk


def _loss(logits: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def nnx_loop(
    net: BatchNormMLP, tx: optax.GradientTransformation, key: jax.Array, steps: int = STEPS
) -> Reference:
    """``steps`` steps of ``tx`` on ``net`` (changed in place), evaluated every ``EVERY``."""
    optimizer = nnx.Optimizer(net, tx, wrt=nnx.Param)

    @nnx.jit
    def train_step(net, optimizer, batch, k):
        def loss_fn(net):
            return _loss(net(batch.x, rngs=nnx.Rngs(k)), batch.y)

        loss, grads = nnx.value_and_grad(loss_fn)(net)
        optimizer.update(net, grads)
        return loss

    @nnx.jit
    def val_loss(net, data):
        return _loss(net(data.x), data.y)

    data_key, loss_key = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    losses, saved = [], []
    for t in range(steps):
        net.train()
        batch = minibatch(TRAIN, data_key, t, BATCH)
        train_step(net, optimizer, batch, jax.random.fold_in(loss_key, t))
        if (t + 1) % EVERY == 0 or t + 1 == steps:
            net.eval()
            losses.append(float(val_loss(net, VAL)))
            saved.append(_variables(net))
    params, stats = _variables(net)
    return Reference(params, stats, losses, saved)


def _variables(net: BatchNormMLP) -> tuple[dict, dict]:
    copy = lambda s: jax.tree.map(np.asarray, nnx.to_pure_dict(s))  # noqa: E731
    return copy(nnx.state(net, nnx.Param)), copy(nnx.state(net, nnx.BatchStat))
