"""`jdl.models.stateful`: BatchNorm's training and evaluation modes against their closed forms,
Linen's ``batch_stats`` against ``module.apply``, per-member statistics under ``vmap``, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen, nnx

from jdl.models import MLP, stateful
from jdl.types import Variables
from tests.nnx_bn_loop import BatchNormMLP

X = jax.random.normal(jax.random.key(0), (10, 6)) * 2.0 + 1.0
MOMENTUM, EPS = 0.8, 1e-5  # BatchNormMLP's momentum; nnx.BatchNorm's default epsilon


def closed_form(params, mean, var, x):
    """relu((h - mean) / sqrt(var + eps) * scale + bias) @ W_out + b_out, h = x @ W."""
    h = x @ params["linear"]["kernel"]
    n = params["norm"]
    h = (h - mean[None]) / jnp.sqrt(var + EPS)[None] * n["scale"][None] + n["bias"][None]
    return jax.nn.relu(h) @ params["out"]["kernel"] + params["out"]["bias"][None]


def test_training_mode_normalises_with_the_batch_and_updates_the_running_statistics():
    apply_fn, (params, state) = stateful(BatchNormMLP(rngs=nnx.Rngs(0), dropout=0.0))
    state = {"norm": {"mean": jnp.full(8, 0.5), "var": jnp.full(8, 2.0)}}
    y, new = jax.jit(apply_fn)(params, state, X, key=jax.random.key(1))
    h = X @ params["linear"]["kernel"]
    mu, sigma2 = h.mean(0), h.var(0)
    np.testing.assert_allclose(y, closed_form(params, mu, sigma2, X), rtol=1e-4, atol=1e-5)
    # phi' = momentum phi + (1 - momentum) batch statistics (Ioffe & Szegedy 2015).
    expected_mean = MOMENTUM * 0.5 + (1 - MOMENTUM) * mu
    expected_var = MOMENTUM * 2.0 + (1 - MOMENTUM) * sigma2
    np.testing.assert_allclose(new["norm"]["mean"], expected_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new["norm"]["var"], expected_var, rtol=1e-5, atol=1e-6)


def test_evaluation_mode_uses_the_running_statistics_and_returns_them_unchanged():
    apply_fn, (params, _) = stateful(BatchNormMLP(rngs=nnx.Rngs(0), dropout=0.0))
    state = {"norm": {"mean": jnp.linspace(-1.0, 1.0, 8), "var": jnp.linspace(0.5, 3.0, 8)}}
    y, same = jax.jit(apply_fn)(params, state, X)
    mean, var = state["norm"]["mean"], state["norm"]["var"]
    np.testing.assert_allclose(y, closed_form(params, mean, var, X), rtol=1e-5, atol=1e-6)
    jax.tree.map(np.testing.assert_array_equal, same, state)
    y_train, _ = apply_fn(params, state, X, key=jax.random.key(1))
    assert not np.allclose(y, y_train)


def test_dropout_keys_and_per_member_statistics_under_vmap():
    apply_fn, _ = stateful(BatchNormMLP(rngs=nnx.Rngs(0)))
    stacked = jax.tree.map(
        lambda *a: jnp.stack(a), *[stateful(BatchNormMLP(rngs=nnx.Rngs(s)))[1] for s in (1, 2)]
    )
    assert isinstance(stacked, Variables)
    xs = jnp.stack([X, X + 1.0])
    ys, new = jax.jit(jax.vmap(lambda p, s, x: apply_fn(p, s, x, key=jax.random.key(3))))(
        *stacked, xs
    )
    members = [jax.tree.map(lambda a, i=i: a[i], stacked) for i in range(2)]
    for i in range(2):
        y_i, new_i = apply_fn(*members[i], xs[i], key=jax.random.key(3))
        np.testing.assert_allclose(ys[i], y_i, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(new["norm"]["mean"][i], new_i["norm"]["mean"], rtol=1e-5)
    assert not np.allclose(new["norm"]["mean"][0], new["norm"]["mean"][1])
    k = jax.random.key(4)
    params, state = members[0]
    np.testing.assert_array_equal(
        apply_fn(params, state, X, key=k)[0], apply_fn(params, state, X, key=k)[0]
    )
    assert not np.allclose(
        apply_fn(params, state, X, key=k)[0], apply_fn(params, state, X, key=jax.random.key(5))[0]
    )


class LinenBN(linen.Module):
    @linen.compact
    def __call__(self, x, use_running_average=True):
        h = linen.BatchNorm(use_running_average=use_running_average, momentum=0.9)(
            linen.Dense(5)(x)
        )
        return linen.Dense(3)(linen.relu(h))


def test_linen_batch_stats_as_module_apply():
    apply_fn, (params, state) = stateful(
        LinenBN(), jax.random.key(0), X, deterministic_arg="use_running_average"
    )
    assert set(state) == {"batch_stats"}
    variables = {"params": params, **state}
    ref, ref_new = LinenBN().apply(variables, X, use_running_average=False, mutable=["batch_stats"])
    y, new = apply_fn(params, state, X, key=jax.random.key(1))
    np.testing.assert_allclose(y, ref, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new, dict(ref_new))
    assert not np.allclose(new["batch_stats"]["BatchNorm_0"]["mean"], 0.0)
    y_eval, same = apply_fn(params, new, X)
    np.testing.assert_allclose(y_eval, LinenBN().apply({"params": params, **new}, X), rtol=1e-6)
    assert same is new


def test_errors():
    with pytest.raises(TypeError, match="use functional"):
        stateful(MLP((4, 3), rngs=nnx.Rngs(0)))
    with pytest.raises(TypeError, match="needs key and x"):
        stateful(LinenBN())
    with pytest.raises(TypeError, match="use from_linen"):
        stateful(linen.Dense(3), jax.random.key(0), X)
    with pytest.raises(TypeError, match=r"nnx\.Module or a flax\.linen\.Module"):
        stateful(lambda x: x)
