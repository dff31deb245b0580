"""Tests for jdl.regularizers: hand-computed values, gradients, jit/vmap, errors."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jdl import regularizers as R  # noqa: N812

PARAMS = {
    "dense": {"kernel": jnp.array([[1.0, -2.0], [3.0, 0.0]]), "bias": jnp.array([5.0, 5.0])},
    "out": {"kernel": jnp.array([[-1.0], [2.0]]), "bias": jnp.array([7.0])},
}


def _sigmoid_layer(W, b):
    return lambda x: jax.nn.sigmoid(x @ W + b[None])


def test_weight_penalties_hand_values_and_masks():
    prefix = {"dense": True, "out": False}  # an optax-style prefix mask

    def biases(p):  # a callable mask
        return jax.tree_util.tree_map(lambda x: x.ndim == 1, p)

    @jax.jit
    def run(params):
        return {
            "l2": R.l2_penalty(params, 0.1),
            "l1": R.l1_penalty(params, 0.1),
            "l2_all": R.l2_penalty(params, 1.0, mask=None),
            "l1_all": R.l1_penalty(params, 1.0, mask=None),
            "l2_prefix": R.l2_penalty(params, 1.0, mask=prefix),
            "l1_biases": R.l1_penalty(params, 2.0, mask=biases),
            "grad_l2": jax.grad(R.l2_penalty)(params, 0.3),
            "grad_l1": jax.grad(R.l1_penalty)(params, 0.5),
        }

    out = run(PARAMS)
    # kernels only: squares 1+4+9+0 + 1+4 = 19, absolute values 1+2+3+0 + 1+2 = 9
    assert float(out["l2"]) == pytest.approx(0.5 * 0.1 * 19)
    assert float(out["l1"]) == pytest.approx(0.1 * 9)
    # every leaf: the biases add 25+25+49 = 99 squares and 5+5+7 = 17 absolute values
    assert float(out["l2_all"]) == pytest.approx(0.5 * 118)
    assert float(out["l1_all"]) == pytest.approx(26)
    assert float(out["l2_prefix"]) == pytest.approx(0.5 * (14 + 50))
    assert float(out["l1_biases"]) == pytest.approx(2 * 17)
    assert R.kernels_only(PARAMS) == {
        "dense": {"kernel": True, "bias": False},
        "out": {"kernel": True, "bias": False},
    }
    # grad of (lambda/2)||w||^2 is lambda * w on the kernels and 0 on the biases
    np.testing.assert_allclose(out["grad_l2"]["dense"]["kernel"], 0.3 * PARAMS["dense"]["kernel"])
    np.testing.assert_array_equal(out["grad_l2"]["out"]["bias"], jnp.zeros(1))
    np.testing.assert_allclose(out["grad_l1"]["out"]["kernel"], jnp.array([[-0.5], [0.5]]))
    with pytest.raises(ValueError, match="mask must have the structure"):
        R.l2_penalty(PARAMS, 1.0, mask={"dense": True})
    with pytest.raises(TypeError, match="concrete booleans"):
        R.l1_penalty(PARAMS, 1.0, mask={"dense": jnp.array([True, False]), "out": True})


def test_activation_and_output_penalties_hand_values():
    h = jnp.array([[1.0, -2.0], [0.0, 3.0]])
    y = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    h_kl = jnp.array([[0.2, 0.5], [0.4, 0.5]])  # rho_hat = (0.3, 0.5)
    at_target = jnp.full((3, 4), 0.2)

    @jax.jit
    def run():
        return {
            "activation_l1": R.activation_l1(h, 0.5),
            "output": R.output_penalty(y, 2.0),
            "kl": R.kl_sparsity(h_kl, 0.1, 3.0),
            "kl_at_target": R.kl_sparsity(at_target, 0.2),
            "kl_grad_at_target": jax.grad(R.kl_sparsity)(at_target, 0.2),
            "kl_dead": R.kl_sparsity(jnp.zeros((2, 3)), 0.05),
        }

    out = run()
    assert float(out["activation_l1"]) == pytest.approx(0.5 * (3 + 3) / 2)
    assert float(out["output"]) == pytest.approx(2.0 * (5 + 25) / 2)

    def kl(r, q):
        return r * math.log(r / q) + (1 - r) * math.log((1 - r) / (1 - q))

    assert float(out["kl"]) == pytest.approx(3.0 * (kl(0.1, 0.3) + kl(0.1, 0.5)), rel=1e-5)
    # zero, with zero gradient, when every unit's mean activation is rho
    assert float(out["kl_at_target"]) == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(out["kl_grad_at_target"], 0.0, atol=1e-5)
    # a dead unit gives a finite penalty
    assert np.isfinite(float(out["kl_dead"]))
    with jax.enable_x64(True):
        h64 = jnp.array([[0.2, 0.7], [0.4, 0.6], [0.1, 0.3]], jnp.float64)

        @jax.jit
        def total(a):
            return (
                R.kl_sparsity(a, 0.1, 2.0)
                + R.activation_l1(a, 2.0)
                + R.output_penalty(a, 2.0)
                + R.l2_penalty(a, 0.7, mask=None)
                + R.l1_penalty(a, 0.7, mask=None)
            )

        check_grads(total, (h64,), order=1, modes=("rev",))


def test_jacobian_penalty_matches_sigmoid_closed_form():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 5)).astype(np.float32)
    # d_out = 2 < d_in = 5 uses jacrev, d_out = 7 > d_in jacfwd: both must equal the closed form
    weights = {d: rng.normal(size=(5, d)).astype(np.float32) for d in (2, 7)}
    biases = {d: 0.1 * np.arange(d, dtype=np.float32) for d in (2, 7)}

    @jax.jit
    def run(weights, biases):
        out = {}
        for d, W in weights.items():
            layer = _sigmoid_layer(W, biases[d])
            out[d] = (
                R.jacobian_penalty(layer, x, 0.5),
                R.sigmoid_contractive_penalty(layer(x), W, 0.5),
            )
        return out

    for d, (exact, formula) in run(weights, biases).items():
        Wn = weights[d].astype(np.float64)
        hn = 1 / (1 + np.exp(-(x.astype(np.float64) @ Wn + biases[d][None])))
        # ||J_n||_F^2 = sum_j (h_nj (1 - h_nj))^2 sum_i W_ij^2, written out as loops
        closed = np.mean(
            [
                sum((hn[n, j] * (1 - hn[n, j])) ** 2 * np.sum(Wn[:, j] ** 2) for j in range(d))
                for n in range(3)
            ]
        )
        assert float(exact) == pytest.approx(0.5 * closed, rel=1e-5), d
        assert float(formula) == pytest.approx(0.5 * closed, rel=1e-5), d
    # the contractive penalty's gradient with respect to the weights (second-order autodiff)
    with jax.enable_x64(True):
        W64, x64 = weights[7].astype(np.float64), x.astype(np.float64)
        penalty = jax.jit(lambda w: R.jacobian_penalty(_sigmoid_layer(w, jnp.zeros(7)), x64))
        check_grads(penalty, (W64,), order=1, modes=("rev",))


def test_jacobian_estimate_is_unbiased():
    key = jax.random.key(1)
    rng = np.random.default_rng(1)
    W = rng.normal(size=(4, 3)).astype(np.float32)
    x = rng.uniform(size=(2, 4)).astype(np.float32)
    f = _sigmoid_layer(W, np.zeros(3, np.float32))

    @jax.jit
    def all_estimates(key):
        many = {
            f"{mode}-{probe}": R.jacobian_penalty_estimate(
                f, x, key, num_probes=20000, mode=mode, probe=probe
            )
            for mode, probe in (("jvp", "rademacher"), ("vjp", "normal"))
        }
        # a diagonal Jacobian: one Rademacher probe (v_i^2 = 1) is already exact
        diagonal = {
            mode: R.jacobian_penalty_estimate(jnp.tanh, x, key, 2.0, mode=mode)
            for mode in ("jvp", "vjp")
        }
        single = R.jacobian_penalty_estimate(f, x, key, probe="normal")
        return R.jacobian_penalty(f, x), R.jacobian_penalty(jnp.tanh, x), many, diagonal, single

    exact, tanh_exact, many, diagonal, single = all_estimates(key)
    for name, value in many.items():
        assert float(value) == pytest.approx(float(exact), rel=0.05), name
    hand = float(np.mean(np.sum((1 - np.tanh(x) ** 2) ** 2, axis=1)))
    assert float(tanh_exact) == pytest.approx(hand, rel=1e-5)
    for mode, value in diagonal.items():
        assert float(value) == pytest.approx(2.0 * hand, rel=1e-5), mode
    # one Gaussian probe is random: another key, another estimate
    assert float(all_estimates(jax.random.key(4))[4]) != float(single)


def test_weight_jacobian_penalty_linear_model():
    # y_n = x_n . w + b: dy/dw = x_n, dy/db = 1
    x = jnp.array([[1.0, 2.0], [3.0, -1.0], [0.0, 2.0]])
    params = {"kernel": jnp.array([[0.5], [-1.5]]), "bias": jnp.array([0.2])}

    def model(p, xb):
        return xb @ p["kernel"] + p["bias"][None]

    kernels, every_leaf = jax.jit(
        lambda p: (
            R.weight_jacobian_penalty(model, p, x, 0.5),
            R.weight_jacobian_penalty(model, p, x, mask=None),
        )
    )(params)
    norms = (5.0 + 10.0 + 4.0) / 3
    assert float(kernels) == pytest.approx(0.5 * norms)
    assert float(every_leaf) == pytest.approx(norms + 1)

    # a nonlinear model: gradient of the penalty with respect to the parameters
    def tanh_model(p, xb):
        return jnp.tanh(xb @ p["kernel"] + p["bias"][None])

    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
        x64 = np.asarray(x, np.float64)
        penalty = jax.jit(lambda p: R.weight_jacobian_penalty(tanh_model, p, x64))
        check_grads(penalty, (p64,), order=1, modes=("rev",))


def test_coefficients_are_data_jit_and_vmap():
    coefficients = jnp.array([0.0, 0.5, 2.0])
    h = jnp.array([[0.2, 0.5], [0.4, 0.5]])
    x = jnp.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    f = jnp.sin
    key = jax.random.key(0)
    penalties = {
        "l2": lambda c: R.l2_penalty(PARAMS, c),
        "l1": lambda c: R.l1_penalty(PARAMS, c),
        "activation_l1": lambda c: R.activation_l1(h, c),
        "kl": lambda c: R.kl_sparsity(h, 0.1, c),
        "output": lambda c: R.output_penalty(h, c),
        "jacobian": lambda c: R.jacobian_penalty(f, x, c),
        "estimate": lambda c: R.jacobian_penalty_estimate(f, x, key, c, num_probes=2),
        "sigmoid": lambda c: R.sigmoid_contractive_penalty(h, x[:, :2], c),
        "weights": lambda c: R.weight_jacobian_penalty(lambda p, z: z @ p, x.T, x, c),
    }

    @jax.jit
    def unit_and_batched(cs, rhos):
        values = {name: (p(1.0), jax.vmap(p)(cs)) for name, p in penalties.items()}
        # rho is data too
        values["rho"] = (R.kl_sparsity(h, 0.3), jax.vmap(lambda r: R.kl_sparsity(h, r))(rhos))
        return values

    values = unit_and_batched(coefficients, jnp.array([0.1, 0.3]))
    for name, (unit, batched) in values.items():
        if name != "rho":
            np.testing.assert_allclose(batched, coefficients * unit, rtol=1e-6, err_msg=name)
    unit, by_rho = values["rho"]
    np.testing.assert_allclose(by_rho, [values["kl"][0], unit], rtol=1e-6)
    # a new coefficient value does not recompile
    chex.clear_trace_counter()
    jitted = jax.jit(chex.assert_max_traces(R.l2_penalty, n=1))
    jitted(PARAMS, 0.1)
    jitted(PARAMS, 0.7)


def test_errors():
    h = jnp.ones((2, 3))
    x = jnp.ones((2, 3))
    key = jax.random.key(0)
    calls = {
        "l2": lambda c: R.l2_penalty(PARAMS, c),
        "l1": lambda c: R.l1_penalty(PARAMS, c),
        "activation_l1": lambda c: R.activation_l1(h, c),
        "kl": lambda c: R.kl_sparsity(h * 0.5, 0.1, c),
        "output": lambda c: R.output_penalty(h, c),
        "jacobian": lambda c: R.jacobian_penalty(jnp.sin, x, c),
        "estimate": lambda c: R.jacobian_penalty_estimate(jnp.sin, x, key, c),
        "sigmoid": lambda c: R.sigmoid_contractive_penalty(h, x, c),
        "weights": lambda c: R.weight_jacobian_penalty(lambda p, z: z @ p, x.T, x, c),
    }
    for call in calls.values():
        for bad in (-0.1, jnp.array(-1.0), float("nan")):
            with pytest.raises(ValueError, match="coefficient must be a finite number >= 0"):
                call(bad)
        with pytest.raises(ValueError, match="coefficient must be a scalar"):
            call(jnp.array([0.1, 0.2]))
    for rho in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="0 < rho < 1"):
            R.kl_sparsity(h, rho)
    with pytest.raises(ValueError, match="leading batch axis"):
        R.activation_l1(jnp.array(1.0))
    with pytest.raises(ValueError, match="leading batch axis"):
        R.jacobian_penalty(jnp.sin, jnp.ones((0, 3)))
    with pytest.raises(ValueError, match="num_probes must be an integer >= 1"):
        R.jacobian_penalty_estimate(jnp.sin, x, key, num_probes=0)
    with pytest.raises(ValueError, match="mode must be"):
        R.jacobian_penalty_estimate(jnp.sin, x, key, mode="forward")
    with pytest.raises(ValueError, match="probe must be"):
        R.jacobian_penalty_estimate(jnp.sin, x, key, probe="uniform")
    with pytest.raises(ValueError, match=r"h must be \(N, d_h\) and kernel \(d_in, d_h\)"):
        R.sigmoid_contractive_penalty(h, jnp.ones((3, 4)))
