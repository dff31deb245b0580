"""Coupled (an L2 penalty in the loss) versus decoupled (AdamW) weight decay.

With plain SGD at learning rate eta, the penalty (lambda / 2) ||w||^2 adds lambda w to the
gradient, and w <- w - eta (grad L(w) + lambda w) = (1 - eta lambda) w - eta grad L(w) is
exactly decoupled decay by the factor eta * lambda per step. With Adam the penalty's gradient
lambda w is divided by sqrt(v_hat) like the rest of the gradient, so it is not a decay any more:
AdamW (Loshchilov & Hutter, ICLR 2019) applies the decay outside the adaptive step instead.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jdl import optim
from jdl.regularizers import l2_penalty

ETA, LAMBDA, STEPS = 0.05, 0.3, 20
W0 = {"kernel": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "bias": jnp.array([0.5, -0.5])}
X = jnp.array([[1.0, 0.5], [-1.0, 2.0], [0.3, -0.7]])
Y = jnp.array([[0.2, 1.0], [1.5, -1.0], [0.0, 0.5]])


def data_loss(w):
    return jnp.mean(jnp.square(jnp.tanh(X @ w["kernel"] + w["bias"][None]) - Y))


def penalized_loss(w):
    return data_loss(w) + l2_penalty(w, LAMBDA, mask=None)  # (lambda / 2) ||w||^2


def run(tx, loss, steps=STEPS):
    """`steps` updates of `tx` on `loss`, compiled as one scan."""

    def step(carry, _):
        w, state = carry
        updates, state = tx.update(jax.grad(loss)(w), state, w)
        return (optax.apply_updates(w, updates), state), None

    return jax.jit(lambda w: jax.lax.scan(step, (w, tx.init(w)), length=steps)[0][0])(W0)


def decoupled_sgd(w):
    """PyTorch's decoupled rule w <- w (1 - eta lambda), then w <- w - eta grad L(w_old)."""
    for _ in range(STEPS):
        g = jax.grad(data_loss)(w)
        w = jax.tree_util.tree_map(lambda p, gi: p * (1 - ETA * LAMBDA) - ETA * gi, w, g)
    return w


def _max_difference(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(a.values(), b.values(), strict=True))


def test_sgd_l2_penalty_equals_decoupled_decay():
    coupled = run(optim.sgd(ETA), penalized_loss)
    decoupled = decoupled_sgd(W0)
    for name in W0:
        np.testing.assert_allclose(coupled[name], decoupled[name], rtol=1e-5, atol=1e-6)
    # and the decay is not negligible: without it the weights end elsewhere
    plain = run(optim.sgd(ETA), data_loss)
    assert _max_difference(coupled, plain) > 0.1


def test_adam_l2_penalty_differs_from_adamw():
    coupled = run(optim.adam(ETA), penalized_loss)
    adamw = run(optim.adamw(ETA, weight_decay=LAMBDA), data_loss)
    assert _max_difference(coupled, adamw) > 0.05
    # With no data loss the difference is plain to see. AdamW's Adam direction is 0 (m = 0) and
    # each step multiplies the weights by (1 - eta lambda). Adam with the penalty normalises
    # its gradient lambda w: the first step is eta * sign(w) whatever lambda is.
    no_data = optim.adamw(ETA, weight_decay=LAMBDA)
    zero_loss = lambda w: 0.0 * data_loss(w)  # noqa: E731
    decayed = run(no_data, zero_loss)
    for name in W0:
        np.testing.assert_allclose(decayed[name], W0[name] * (1 - ETA * LAMBDA) ** STEPS, rtol=1e-5)
    for lam in (1e-2, 1.0):
        one_step = run(optim.adam(ETA), lambda w, lam=lam: l2_penalty(w, lam, mask=None), steps=1)
        for name in W0:
            np.testing.assert_allclose(
                one_step[name], W0[name] - ETA * jnp.sign(W0[name]), rtol=1e-5
            )
