"""Hyper-parameters are data: vmap over them, one compile for many values, validation."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jdl.optim

STEPS = 30


def loss(theta: jax.Array) -> jax.Array:
    """A non-quadratic bowl: log-cosh plus a quartic."""
    return jnp.sum(jnp.log(jnp.cosh(theta - 0.5)) + 0.1 * theta**4)


def trajectory(tx: optax.GradientTransformation) -> jax.Array:
    def step(carry, _):
        theta, state = carry
        updates, state = tx.update(jax.grad(loss)(theta), state, theta)
        theta = optax.apply_updates(theta, updates)
        return (theta, state), theta

    theta = jnp.array([2.0, -1.0, 0.3])
    return jax.lax.scan(step, (theta, tx.init(theta)), length=STEPS)[1]


def runs(h: dict) -> dict[str, jax.Array]:
    """One trajectory per (optimizer, hyper-parameter) pair, each built from ``h``."""
    return {
        "sgd/learning_rate": trajectory(jdl.optim.sgd(h["learning_rate"])),
        "momentum/momentum": trajectory(jdl.optim.momentum(0.05, momentum=h["momentum"])),
        "adam/b1": trajectory(jdl.optim.adam(0.05, b1=h["b1"])),
        "qhm/nu": trajectory(jdl.optim.qhm(0.05, momentum=0.9, nu=h["nu"])),
        "aggmo/betas": trajectory(jdl.optim.aggmo(0.05, betas=h["betas"])),
    }


HPARAMS = {
    "learning_rate": [0.01, 0.1, 0.3],
    "momentum": [0.0, 0.5, 0.9],
    "b1": [0.0, 0.5, 0.9],
    "nu": [0.0, 0.7, 1.0],
    "betas": [[0.0, 0.9, 0.99], [0.5, 0.5, 0.9], [0.9, 0.9, 0.9]],
}


def as_arrays(h: dict) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v, jnp.float32) for k, v in h.items()}


def test_vmap_over_hyperparameters_equals_separate_runs():
    batched = jax.jit(jax.vmap(runs))(as_arrays(HPARAMS))
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)  # the hyper-parameters are arguments: one compile for all
    def single(h):
        return runs(h)

    for i in range(3):
        member = {k: v[i] for k, v in HPARAMS.items()}
        separate = single(as_arrays(member))
        for key, path in separate.items():
            np.testing.assert_allclose(batched[key][i], path, rtol=1e-6, atol=1e-7, err_msg=key)
        if i == 1:  # the same run built from Python numbers
            python = jax.jit(lambda member=member: runs(member))()
            for key, path in python.items():
                np.testing.assert_allclose(path, separate[key], rtol=1e-6, atol=1e-7, err_msg=key)
    for key, paths in batched.items():  # the members differ: the hyper-parameter is used
        assert not np.allclose(paths[0], paths[2]), key


def test_jitted_step_compiles_once_for_many_learning_rates():
    compiles = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    @jax.jit
    def step(theta, state, learning_rate):
        tx = jdl.optim.nadam(learning_rate)
        updates, state = tx.update(jax.grad(loss)(theta), state, theta)
        return optax.apply_updates(theta, updates), state

    theta = jnp.array([2.0, -1.0, 0.3])
    state = jdl.optim.nadam(0.1).init(theta)
    jax.block_until_ready(state)
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        for learning_rate in [1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]:
            theta, state = step(theta, state, learning_rate)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert len(compiles) == 1
    assert int(state[0].count) == 7


BAD = [
    (lambda: jdl.optim.sgd(-0.1), r"learning_rate must be in \[0, inf\)"),
    (lambda: jdl.optim.adam(math.nan), r"learning_rate must be in \[0, inf\)"),
    (lambda: jdl.optim.adam(np.array([0.1, -0.1])), r"learning_rate must be in \[0, inf\)"),
    (lambda: jdl.optim.momentum(0.1, momentum=1.0), r"momentum must be in \[0, 1\)"),
    (lambda: jdl.optim.nesterov(0.1, momentum=-0.1), r"momentum must be in \[0, 1\)"),
    (lambda: jdl.optim.adagrad(0.1, eps=0.0), r"eps must be in \(0, inf\)"),
    (
        lambda: jdl.optim.adagrad(0.1, initial_accumulator_value=-1.0),
        r"initial_accumulator_value must be in \[0, inf\)",
    ),
    (lambda: jdl.optim.adadelta(rho=1.5), r"rho must be in \[0, 1\]"),
    (lambda: jdl.optim.adadelta(eps=-1e-6), r"eps must be in \(0, inf\)"),
    (lambda: jdl.optim.adam(0.1, b1=1.0), r"b1 must be in \[0, 1\)"),
    (lambda: jdl.optim.adamax(0.1, b2=-0.5), r"b2 must be in \[0, 1\)"),
    (lambda: jdl.optim.nadam(0.1, momentum_decay=-1.0), r"momentum_decay must be in \[0, inf\)"),
    (lambda: jdl.optim.amsgrad(0.1, eps=0.0), r"eps must be in \(0, inf\)"),
    (lambda: jdl.optim.adamw(0.1, weight_decay=-0.1), r"weight_decay must be in \[0, inf\)"),
    (lambda: jdl.optim.qhm(0.1, nu=1.5), r"nu must be in \[0, 1\]"),
    (lambda: jdl.optim.qhm(0.1, momentum=1.0), r"momentum must be in \[0, 1\)"),
    (lambda: jdl.optim.qhadam(0.1, nu1=-0.1), r"nu1 must be in \[0, 1\]"),
    (lambda: jdl.optim.qhadam(0.1, nu2=2.0), r"nu2 must be in \[0, 1\]"),
    (lambda: jdl.optim.aggmo(0.1, betas=()), r"betas must be a non-empty"),
    (lambda: jdl.optim.aggmo(0.1, betas=jnp.zeros((0,))), r"betas must be a non-empty"),
    (lambda: jdl.optim.aggmo(0.1, betas=(0.5, 1.0)), r"betas\[1\] must be in \[0, 1\)"),
    (lambda: jdl.optim.aggmo(0.1, betas=np.array([0.5, -1.0])), r"betas must be in \[0, 1\)"),
    (lambda: jdl.optim.time_constant_decay(0.1, tau=0.5), r"tau must be in \[1, inf\)"),
    (lambda: jdl.optim.time_constant_decay(-0.1, tau=10), r"init_value must be in \[0, inf\)"),
]


@pytest.mark.parametrize(("make", "message"), BAD, ids=[m for _, m in BAD])
def test_out_of_range_values_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "make",
    [
        lambda: jdl.optim.adam("0.1"),
        lambda: jdl.optim.adam(0.1, b1=None),
        lambda: jdl.optim.momentum(0.1, momentum=True),
        lambda: jdl.optim.aggmo(0.1, betas=0.9),
    ],
)
def test_non_numbers_raise_type_error(make):
    with pytest.raises(TypeError, match="must be"):
        make()


def test_traced_values_are_not_checked():
    """Out-of-range traced values build a transformation (no Python branch on them)."""

    def update(h):
        tx = optax.chain(
            jdl.optim.adam(h, b1=h, b2=h, eps=h),
            jdl.optim.qhm(h, momentum=h, nu=h),
            jdl.optim.aggmo(h, betas=jnp.stack([h, h])),
        )
        theta = jnp.ones(2)
        return tx.update(theta, tx.init(theta), theta)[0]

    jax.make_jaxpr(update)(-1.0)
    jax.make_jaxpr(jax.vmap(update))(jnp.array([-1.0, 2.0]))
