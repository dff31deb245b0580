"""One table of every optimizer drives the shared tests.

Each optimizer runs, in a single compiled program per optimizer: an ill-conditioned quadratic
(a ravine), the Rosenbrock function, and a few steps on a mixed pytree of float64, float32 and
bfloat16 parameters. The hyper-parameters are arguments of that program, so calling it again
with other values (a zero learning rate) must not recompile and must leave the parameters put.
"""

from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jdl.optim


class Entry(NamedTuple):
    name: str
    ravine: dict[str, float]  # hyper-parameters on the ravine
    rosenbrock: dict[str, float]  # hyper-parameters on Rosenbrock


TABLE = [
    Entry("sgd", {"learning_rate": 0.01}, {"learning_rate": 0.001}),
    Entry("momentum", {"learning_rate": 0.01}, {"learning_rate": 0.001}),
    Entry("nesterov", {"learning_rate": 0.01}, {"learning_rate": 0.001}),
    Entry("adagrad", {"learning_rate": 0.3}, {"learning_rate": 1.0}),
    Entry("adadelta", {"learning_rate": 1.0, "rho": 0.99}, {"learning_rate": 0.05}),
    Entry("adam", {"learning_rate": 0.1}, {"learning_rate": 0.03}),
    Entry("adamax", {"learning_rate": 0.1}, {"learning_rate": 0.1}),
    Entry("nadam", {"learning_rate": 0.1}, {"learning_rate": 0.01}),
    Entry("amsgrad", {"learning_rate": 0.1}, {"learning_rate": 0.1}),
    Entry("adamw", {"learning_rate": 0.1}, {"learning_rate": 0.03}),
    Entry(
        "qhm", {"learning_rate": 0.03, "momentum": 0.9}, {"learning_rate": 0.003, "momentum": 0.9}
    ),
    Entry("qhadam", {"learning_rate": 0.1}, {"learning_rate": 0.01}),
    Entry("aggmo", {"learning_rate": 0.01}, {"learning_rate": 0.001}),
]
RAVINE_STEPS, RAVINE_TOL = 1000, 1e-3
ROSENBROCK_STEPS, ROSENBROCK_TOL = 5000, 1e-2
MIXED_STEPS = 10


def ravine(theta: jax.Array) -> jax.Array:
    """An elongated quadratic, condition number 100: 0.5 (x^2 + 100 y^2)."""
    return 0.5 * (theta[0] ** 2 + 100 * theta[1] ** 2)


def rosenbrock(theta: jax.Array) -> jax.Array:
    """(1 - x)^2 + 100 (y - x^2)^2, minimum 0 at (1, 1)."""
    return (1 - theta[0]) ** 2 + 100 * (theta[1] - theta[0] ** 2) ** 2


def mixed_loss(params: dict) -> jax.Array:
    """A separable quadratic over every leaf, accumulated in float32."""
    leaves = jax.tree.leaves(params)
    return sum(jnp.sum((leaf.astype(jnp.float32) - 1.0) ** 2) for leaf in leaves)


def minimize(
    tx: optax.GradientTransformation, loss: Callable, params, steps: int
) -> tuple[object, optax.OptState]:
    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, state), _ = jax.lax.scan(step, (params, tx.init(params)), length=steps)
    return params, state


def mixed_params() -> dict:
    init = np.array([0.5, -0.25, 2.0])
    return {
        "f64": jnp.asarray(init, jnp.float64),
        "f32": (jnp.asarray(init, jnp.float32),),
        "nested": {"bf16": jnp.asarray(init, jnp.bfloat16)},
    }


def as_arrays(hparams: dict[str, float], scale_lr: float = 1.0) -> dict[str, jax.Array]:
    return {
        k: jnp.asarray(v * scale_lr if k == "learning_rate" else v, jnp.float32)
        for k, v in hparams.items()
    }


def check_state(state: optax.OptState, params: dict, steps: int) -> None:
    """Every count is an int32 equal to ``steps``; every buffer has its parameter's dtype."""
    param_leaves = {
        jax.tree_util.keystr(path): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(params)
    }
    counts = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        if path[-1] == jax.tree_util.GetAttrKey("count"):
            assert leaf.dtype == jnp.int32 and leaf.shape == ()
            assert int(leaf) == steps
            counts += 1
            continue
        keys = [i for i, k in enumerate(path) if isinstance(k, jax.tree_util.DictKey)]
        if keys:
            param = param_leaves[jax.tree_util.keystr(path[keys[0] :])]
            assert leaf.dtype == param.dtype, path
            assert leaf.shape[leaf.ndim - param.ndim :] == param.shape, path
    assert counts >= 1 or not jax.tree.leaves(state)  # plain SGD keeps no state


@pytest.mark.parametrize("entry", TABLE, ids=[e.name for e in TABLE])
def test_optimizer(entry: Entry, x64):
    make = getattr(jdl.optim, entry.name)
    chex.clear_trace_counter()  # `solve` has the same source for every entry

    @jax.jit
    @chex.assert_max_traces(n=1)  # other hyper-parameter values must not recompile
    def solve(h_ravine: dict, h_rosenbrock: dict):
        theta_ravine, _ = minimize(
            make(**h_ravine), ravine, jnp.array([3.0, 1.0], jnp.float32), RAVINE_STEPS
        )
        theta_rosenbrock, _ = minimize(
            make(**h_rosenbrock), rosenbrock, jnp.array([-1.2, 1.0], jnp.float32), ROSENBROCK_STEPS
        )
        mixed, state = minimize(make(**h_ravine), mixed_loss, mixed_params(), MIXED_STEPS)
        return theta_ravine, theta_rosenbrock, mixed, state

    theta_ravine, theta_rosenbrock, mixed, state = solve(
        as_arrays(entry.ravine), as_arrays(entry.rosenbrock)
    )
    assert theta_ravine.dtype == theta_rosenbrock.dtype == jnp.float32
    assert ravine(theta_ravine) < RAVINE_TOL
    assert rosenbrock(theta_rosenbrock) < ROSENBROCK_TOL

    # dtypes and mixed pytrees: parameters keep their dtype and move; state follows them.
    init = mixed_params()
    assert jax.tree.map(lambda p: p.dtype, mixed) == jax.tree.map(lambda p: p.dtype, init)
    assert jax.tree.structure(state) == jax.tree.structure(make(**entry.ravine).init(init))
    check_state(state, init, MIXED_STEPS)
    for leaf, start in zip(jax.tree.leaves(mixed), jax.tree.leaves(init), strict=True):
        assert np.all(np.isfinite(np.asarray(leaf, np.float64)))
        assert np.all(np.asarray(leaf) != np.asarray(start))
    # bfloat16 follows the float32 trajectory to bfloat16 precision.
    np.testing.assert_allclose(
        np.asarray(mixed["nested"]["bf16"], np.float32), mixed["f32"][0], rtol=2e-2, atol=2e-2
    )
    np.testing.assert_allclose(mixed["f64"], mixed["f32"][0], rtol=1e-5, atol=1e-6)

    # Other hyper-parameter values reuse the compiled program; a zero rate stays put.
    theta_ravine_0, theta_rosenbrock_0, mixed_0, _ = solve(
        as_arrays(entry.ravine, 0.0), as_arrays(entry.rosenbrock, 0.0)
    )
    np.testing.assert_array_equal(theta_ravine_0, np.float32([3.0, 1.0]))
    np.testing.assert_array_equal(theta_rosenbrock_0, np.float32([-1.2, 1.0]))
    for leaf, start in zip(jax.tree.leaves(mixed_0), jax.tree.leaves(init), strict=True):
        np.testing.assert_array_equal(np.asarray(leaf, np.float64), np.asarray(start, np.float64))


def test_public_names():
    """Every public name is importable and documented."""
    for name in jdl.optim.__all__:
        obj = getattr(jdl.optim, name)
        assert obj.__doc__, name
    aliases = [e.name for e in TABLE]
    assert sorted(aliases) == sorted(
        n
        for n in jdl.optim.__all__
        if n.islower() and not n.startswith(("scale_by", "time_")) and n != "switch"
    )  # switch chooses among optimizers: a combinator, not one of them
    assert sorted(jdl.optim.OPTIMIZERS) == sorted(aliases)
    assert all(jdl.optim.OPTIMIZERS[n] is getattr(jdl.optim, n) for n in aliases)
