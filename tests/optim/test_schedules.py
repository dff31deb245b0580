"""time_constant_decay: eta_t = eta_0 tau / max(t, tau)."""

import jax
import jax.numpy as jnp
import numpy as np

import jdl.optim


def test_time_constant_decay_values():
    schedule = jdl.optim.time_constant_decay(0.2, tau=50)
    counts = jnp.arange(0, 400, 7)
    expected = 0.2 * 50 / np.maximum(np.arange(0, 400, 7), 50)
    np.testing.assert_allclose(jax.jit(schedule)(counts), expected, rtol=1e-6)
    assert schedule(0) == schedule(50) == np.float32(0.2)
    np.testing.assert_allclose(schedule(100), 0.1, rtol=1e-6)


def test_time_constant_decay_holds_eta0_for_tau_plus_one_updates():
    # optax counts from 0: updates t = 0, ..., tau (tau + 1 of them) use eta_0, then it decays.
    tau, eta0 = 4, 0.3
    schedule = jdl.optim.time_constant_decay(eta0, tau=tau)
    rates = [float(schedule(t)) for t in range(7)]
    np.testing.assert_allclose(rates, [0.3] * 5 + [0.3 * 4 / 5, 0.3 * 4 / 6], rtol=1e-6)
    # The same count in an optimizer: plain SGD on f(w) = w moves by exactly these rates.
    tx = jdl.optim.sgd(schedule)
    w, state, moves = jnp.zeros(()), tx.init(jnp.zeros(())), []
    for _ in range(7):
        updates, state = tx.update(jnp.ones(()), state, w)
        moves.append(-float(updates))
        w = w + updates
    np.testing.assert_allclose(moves, rates, rtol=1e-6)


def test_time_constant_decay_with_traced_hyperparameters():
    """init_value and tau may be arrays: vmap over them equals the formula."""
    init_values, taus = jnp.array([0.1, 0.5]), jnp.array([1.0, 20.0])
    values = jax.vmap(lambda e, tau: jdl.optim.time_constant_decay(e, tau)(40))(init_values, taus)
    np.testing.assert_allclose(values, [0.1 / 40, 0.5 * 20 / 40], rtol=1e-6)
