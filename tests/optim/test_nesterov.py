"""Nesterov: the one-gradient reformulation equals the course's look-ahead form."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jdl.optim

A = np.array([[3.0, 1.0], [1.0, 0.5]])  # a positive-definite quadratic 0.5 theta^T A theta
ETA, GAMMA, STEPS = 0.1, 0.9, 60


def test_reformulated_update_equals_look_ahead_form(x64):
    """With phi = theta - gamma v, jdl.optim.nesterov's stored parameters are phi.

    The course's form: v_t = gamma v_{t-1} + eta grad f(theta_{t-1} - gamma v_{t-1}),
    theta_t = theta_{t-1} - v_t, here in NumPy. jdl.optim.nesterov starts from the same point
    (v_0 = 0, so phi_0 = theta_0) and evaluates one gradient per step at its own parameters;
    its parameters must equal theta_t - gamma v_t at every step.
    """
    theta, v = np.array([1.0, -2.0]), np.zeros(2)
    expected = []
    for _ in range(STEPS):
        v = GAMMA * v + ETA * A @ (theta - GAMMA * v)
        theta = theta - v
        expected.append(theta - GAMMA * v)

    tx = jdl.optim.nesterov(ETA, momentum=GAMMA)

    def step(carry, _):
        phi, state = carry
        updates, state = tx.update(jnp.asarray(A) @ phi, state)
        phi = optax.apply_updates(phi, updates)
        return (phi, state), phi

    phi0 = jnp.array([1.0, -2.0])
    _, path = jax.lax.scan(step, (phi0, tx.init(phi0)), length=STEPS)
    np.testing.assert_allclose(path, np.stack(expected), rtol=1e-12, atol=1e-14)
    # Not a vacuous match: heavy-ball momentum (gradient at theta itself) follows another path.
    theta, v = np.array([1.0, -2.0]), np.zeros(2)
    for _ in range(3):
        v = GAMMA * v + ETA * A @ theta
        theta = theta - v
    assert not np.allclose(theta - GAMMA * v, expected[2])
    assert not np.allclose(theta, expected[2])
