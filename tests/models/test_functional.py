"""The functional boundary for NNX modules, Linen modules, and the dropout key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen, nnx

from jdl.models import MLP, from_linen, functional

X = jnp.linspace(-1.0, 1.0, 24).reshape(6, 4)


class StoredStream(nnx.Module):
    """Dropout that keeps its own RNG stream and a __call__ without an rngs argument."""

    def __init__(self, rngs):
        self.linear = nnx.Linear(4, 16, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return self.drop(self.linear(x))


class LinenNet(linen.Module):
    @linen.compact
    def __call__(self, x, deterministic=True):
        h = linen.Dropout(0.5)(linen.relu(linen.Dense(16)(x)), deterministic=deterministic)
        return linen.Dense(3)(h)


def test_nnx_mlp_matches_hand_computation_and_dropout_key():
    model = MLP((4, 16, 3), dropout_rate=0.5, rngs=nnx.Rngs(0))
    apply_fn, params = functional(model)
    l0, l1 = params["layers"][0], params["layers"][1]
    expected = jax.nn.relu(X @ l0["kernel"] + l0["bias"][None]) @ l1["kernel"] + l1["bias"][None]
    np.testing.assert_allclose(apply_fn(params, X), expected, rtol=1e-6)
    k1, k2 = jax.random.key(1), jax.random.key(2)
    train1 = apply_fn(params, X, key=k1)
    assert not np.allclose(train1, expected)
    np.testing.assert_array_equal(train1, apply_fn(params, X, key=k1))  # same key, same mask
    assert not np.allclose(train1, apply_fn(params, X, key=k2))
    # A pure function: gradients and jit work, and the module is untouched by params edits.
    grads = jax.jit(jax.grad(lambda p, k: jnp.sum(apply_fn(p, X, key=k) ** 2)))(params, k1)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    params["layers"][1]["bias"] = params["layers"][1]["bias"] + 1.0
    np.testing.assert_allclose(model.layers[1].bias[...], 0.0)


def test_nnx_module_with_stored_stream_is_reseeded_by_the_key():
    apply_fn, params = functional(StoredStream(nnx.Rngs(params=0, dropout=1)))
    ev = apply_fn(params, X)
    np.testing.assert_array_equal(ev, apply_fn(params, X))
    k = jax.random.key(3)
    a, b = apply_fn(params, X, key=k), apply_fn(params, X, key=k)
    np.testing.assert_array_equal(a, b)
    assert np.any(a == 0.0) and not np.array_equal(a, apply_fn(params, X, key=jax.random.key(4)))
    np.testing.assert_allclose(np.where(a == 0.0, 0.0, ev * 2.0), a, rtol=1e-6)


def test_linen_module_and_errors():
    apply_fn, params = from_linen(
        LinenNet(), jax.random.key(0), X, deterministic_arg="deterministic"
    )
    ref = LinenNet().apply({"params": params}, X)
    np.testing.assert_allclose(apply_fn(params, X), ref, rtol=1e-6)
    k = jax.random.key(5)
    np.testing.assert_array_equal(apply_fn(params, X, key=k), apply_fn(params, X, key=k))
    assert not np.allclose(apply_fn(params, X, key=k), ref)
    with pytest.raises(TypeError, match="from_linen"):
        functional(LinenNet())
    with pytest.raises(TypeError, match="linen"):
        from_linen(MLP((4, 3), rngs=nnx.Rngs(0)), jax.random.key(0), X)
    # A model with state goes through jdl.models.stateful, which the message names.
    with pytest.raises(TypeError, match=r"BatchStat.*jdl\.models\.stateful"):
        functional(nnx.BatchNorm(4, rngs=nnx.Rngs(0)))
