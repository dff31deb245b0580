"""Gradients of jdl's own formulas against independent references, in float64, tightly.

``check_grads`` compares JAX's autodiff with JAX's finite differences of the same function: it
cannot tell a wrong formula from a right one. Here each gradient is compared with its closed form
(written out in NumPy from the docstring's equation), or with central finite differences of a
NumPy implementation of the formula, at relative tolerances of 1e-10 and 1e-7.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jdl import losses as L  # noqa: N812
from jdl import regularizers as R  # noqa: N812
from jdl.data import Dataset
from jdl.models import Autoencoder, contractive_loss, functional

RNG = np.random.default_rng(0)
CLOSED = {"rtol": 1e-10, "atol": 1e-13}  # autodiff against a closed form
FINITE = {"rtol": 1e-7, "atol": 1e-10}  # against central differences, step 1e-6


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def central_differences(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """(f(x + eps e_i) - f(x - eps e_i)) / (2 eps) for every element i of x (NumPy, float64)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = eps
        grad[i] = (f(x + step) - f(x - step)) / (2 * eps)
    return grad


def grad64(f, *args):
    with jax.enable_x64(True):
        return np.asarray(jax.grad(f)(*(jnp.asarray(a, jnp.float64) for a in args)))


def test_loss_gradients_equal_their_closed_forms():
    pred, target = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))
    np.testing.assert_allclose(grad64(L.mse, pred, target), 2 * (pred - target) / 12, **CLOSED)

    logits, soft = RNG.normal(size=(4, 3)), RNG.uniform(size=(4, 3))
    bce = grad64(lambda a: L.binary_cross_entropy_with_logits(a, soft), logits)
    np.testing.assert_allclose(bce, (sigmoid(logits) - soft) / 12, **CLOSED)

    labels = np.array([0, 2, 1, 2])
    softmax = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ce = grad64(lambda a: L.softmax_cross_entropy(a, labels), logits)
    np.testing.assert_allclose(ce, (softmax - np.eye(3)[labels]) / 4, **CLOSED)

    # Dice: dD/dp_j = [2 g_j (U + s) - (2I + s) dU/dp_j] / (U + s)^2, loss gradient -dD/dp / n.
    p, g, s = RNG.uniform(size=(3, 2, 4)), (RNG.uniform(size=(3, 2, 4)) > 0.5) * 1.0, 0.7
    for squared in (True, False):
        dice = grad64(lambda q, sq=squared: L.dice_loss(q, g, smooth=s, squared=sq), p)
        intersection = (p * g).sum(axis=(1, 2), keepdims=True)
        if squared:
            union, d_union = (p**2 + g**2).sum(axis=(1, 2), keepdims=True), 2 * p
        else:
            union, d_union = (p + g).sum(axis=(1, 2), keepdims=True), np.ones_like(p)
        d_dice = (2 * g * (union + s) - (2 * intersection + s) * d_union) / (union + s) ** 2
        np.testing.assert_allclose(dice, -d_dice / 3, **CLOSED, err_msg=f"squared={squared}")


def test_regularizer_gradients_equal_their_closed_forms():
    params = {"kernel": RNG.normal(size=(3, 2)), "bias": RNG.normal(size=2)}
    with jax.enable_x64(True):
        p64 = jax.tree.map(jnp.asarray, params)
        l2 = jax.grad(lambda p: R.l2_penalty(p, 0.3))(p64)
        l1 = jax.grad(lambda p: R.l1_penalty(p, 0.3))(p64)
    # R = (lambda/2) ||W||^2 and lambda ||W||_1 over the kernels; the bias is left out.
    np.testing.assert_allclose(l2["kernel"], 0.3 * params["kernel"], **CLOSED)
    np.testing.assert_allclose(l1["kernel"], 0.3 * np.sign(params["kernel"]), **CLOSED)
    np.testing.assert_array_equal(l2["bias"], 0.0)
    np.testing.assert_array_equal(l1["bias"], 0.0)

    h, y = RNG.uniform(0.05, 0.95, size=(5, 3)), RNG.normal(size=(5, 2))
    np.testing.assert_allclose(
        grad64(lambda a: R.activation_l1(a, 0.4), h), 0.4 * np.sign(h) / 5, **CLOSED
    )
    np.testing.assert_allclose(grad64(lambda a: R.output_penalty(a, 0.4), y), 0.8 * y / 5, **CLOSED)
    # KL: dR/dh_nj = (beta / N) (-rho / rho_hat_j + (1 - rho) / (1 - rho_hat_j)).
    rho_hat = h.mean(axis=0)
    kl = (1.5 / 5) * (-0.2 / rho_hat + 0.8 / (1 - rho_hat)) * np.ones_like(h)
    np.testing.assert_allclose(grad64(lambda a: R.kl_sparsity(a, 0.2, 1.5), h), kl, **CLOSED)


def _contraction(W: np.ndarray, b: np.ndarray, x: np.ndarray) -> float:
    """(1/N) sum_n ||dh/dx (x_n)||_F^2 of h = sigmoid(x W + b), the Jacobian's entries written
    out one by one: dh_j/dx_i = h_j (1 - h_j) W_ij."""
    total = 0.0
    for n in range(x.shape[0]):
        h = sigmoid(x[n] @ W + b)
        total += sum(
            (h[j] * (1 - h[j]) * W[i, j]) ** 2 for i in range(W.shape[0]) for j in range(W.shape[1])
        )
    return total / x.shape[0]


def test_contractive_penalties_gradient_equals_finite_differences():
    W, b, x = RNG.normal(size=(4, 3)), RNG.normal(size=3), RNG.uniform(size=(5, 4))
    reference = central_differences(lambda w: 0.7 * _contraction(w, b, x), W)

    def exact(w):
        return R.jacobian_penalty(lambda z: jax.nn.sigmoid(z @ w + b[None]), jnp.asarray(x), 0.7)

    def closed(w):
        return R.sigmoid_contractive_penalty(jax.nn.sigmoid(x @ w + b[None]), w, 0.7)

    for name, penalty in (("jacobian_penalty", exact), ("sigmoid_contractive", closed)):
        np.testing.assert_allclose(grad64(penalty, W), reference, **FINITE, err_msg=name)


def test_contractive_autoencoder_loss_gradient_equals_finite_differences():
    """The whole loss of a one-layer sigmoid autoencoder, per-pixel squared error plus
    lambda ||J_f||_F^2, against a NumPy implementation of its equation."""
    model = Autoencoder((4, 3), rngs=nnx.Rngs(0))
    x = RNG.uniform(size=(5, 4))
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), functional(model)[1])
    enc, dec = params["f"][0], params["g"][0]

    def numpy_loss(W, b, V, c):
        h = sigmoid(x @ W + b)
        reconstruction = np.mean((x - sigmoid(h @ V + c)) ** 2)
        return reconstruction + 0.3 * _contraction(W, b, x)

    args = [enc["kernel"], enc["bias"], dec["kernel"], dec["bias"]]
    expected = [
        central_differences(lambda a, i=i: numpy_loss(*args[:i], a, *args[i + 1 :]), args[i])
        for i in range(len(args))
    ]
    for method in ("exact", "sigmoid"):
        loss_fn = contractive_loss(model, 0.3, method=method)
        with jax.enable_x64(True):
            batch = Dataset(jnp.asarray(x), jnp.zeros(5))
            total = jax.value_and_grad(lambda p, f=loss_fn, b=batch: f(p, b, jax.random.key(0))[0])
            value, grads = total(jax.tree.map(jnp.asarray, params))
        np.testing.assert_allclose(value, numpy_loss(*args), rtol=1e-12, err_msg=method)
        jdl_grads = [grads["f"][0]["kernel"], grads["f"][0]["bias"]]
        jdl_grads += [grads["g"][0]["kernel"], grads["g"][0]["bias"]]
        for i, (got, want) in enumerate(zip(jdl_grads, expected, strict=True)):
            np.testing.assert_allclose(got, want, **FINITE, err_msg=f"{method} argument {i}")
