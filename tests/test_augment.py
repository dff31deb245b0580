"""Tests for jdl.augment: hand-computed values, statistics, gradients, jit/vmap, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jdl import augment as A  # noqa: N812

KEY = jax.random.key(0)


def test_gaussian_noise_isotropic_and_diagonal():
    x = jnp.arange(6.0).reshape(2, 3)
    sigma = jnp.array([0.0, 0.5, 2.0])
    big = jnp.ones((20000, 3))

    @jax.jit
    def run(key, sigmas):
        return {
            "z": jax.random.normal(key, x.shape),
            "iso": A.gaussian_noise(key, x, 0.5),
            "diag": A.gaussian_noise(key, x, sigma),
            "big": A.gaussian_noise(key, big, sigma),
            # sigma is data: vmap over sigma
            "by_sigma": jax.vmap(lambda s: A.gaussian_noise(key, x, s))(sigmas),
        }

    out = jax.tree.map(np.asarray, run(KEY, jnp.array([0.0, 0.5])))
    # x~ = x + sigma * z with z the key's standard normal draw
    np.testing.assert_allclose(out["iso"], x + 0.5 * out["z"], rtol=1e-6)
    np.testing.assert_allclose(out["diag"], x + sigma[None] * out["z"], rtol=1e-6)
    # diagonal Sigma = diag(sigma^2): per-feature standard deviations; sigma 0 leaves x unchanged
    np.testing.assert_allclose(np.std(out["big"], axis=0), sigma, rtol=0.03)
    np.testing.assert_array_equal(out["big"][:, 0], big[:, 0])
    np.testing.assert_array_equal(out["by_sigma"][0], x)
    np.testing.assert_allclose(out["by_sigma"][1], out["iso"], rtol=1e-6)
    # gradients flow to x (identity) and sigma (the noise); linear, so a large eps is exact
    noisy = jax.jit(lambda a, s: A.gaussian_noise(KEY, a, s))
    check_grads(noisy, (x, 0.3), order=1, modes=("rev",), eps=0.5, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="sigma must be finite and >= 0"):
        A.gaussian_noise(KEY, x, -0.1)
    with pytest.raises(ValueError, match="sigma must be finite and >= 0"):
        A.gaussian_noise(KEY, x, jnp.array([0.1, -0.1, 0.1]))
    with pytest.raises(ValueError, match=r"broadcastable to one example's shape \(3,\)"):
        A.gaussian_noise(KEY, x, jnp.ones(4))
    with pytest.raises(ValueError, match="leading batch axis"):
        A.gaussian_noise(KEY, jnp.array(1.0), 0.1)
    with pytest.raises(TypeError, match="floating-point"):
        A.gaussian_noise(KEY, jnp.ones((2, 3), jnp.int32), 0.1)


def test_masking_noise_has_no_rescaling():
    x = jnp.ones((200, 50))
    small = jnp.array([[1.0, -2.0, 3.0]])

    @jax.jit
    def run(key, ps):
        return {
            "masked": A.masking_noise(key, x, 0.25),
            "keep": jax.random.bernoulli(key, 0.75, x.shape),
            # p is data: vmap over p
            "by_p": jax.vmap(lambda p: A.masking_noise(key, small, p))(ps),
        }

    out = jax.tree.map(np.asarray, run(KEY, jnp.array([0.0, 1.0])))
    kept = out["masked"][out["masked"] != 0]
    # survivors keep their value exactly (dropout would give 1 / (1 - p) = 4/3)
    np.testing.assert_array_equal(kept, 1.0)
    assert 1 - kept.size / x.size == pytest.approx(0.25, abs=0.02)
    # the same mask as the Bernoulli(1 - p) draw of the key
    np.testing.assert_array_equal(out["masked"], np.where(out["keep"], 1.0, 0.0))
    np.testing.assert_array_equal(out["by_p"][0], small)
    np.testing.assert_array_equal(out["by_p"][1], np.zeros((1, 3)))
    # the gradient with respect to x is the mask
    masked = jax.jit(lambda a: A.masking_noise(KEY, a, 0.5))
    check_grads(masked, (small,), order=1, modes=("rev",), eps=0.5, atol=1e-5, rtol=1e-5)
    for bad in (-0.1, 1.5, jnp.array([0.1, 0.2])):
        with pytest.raises(ValueError, match=r"p must be a scalar probability in \[0, 1\]"):
            A.masking_noise(KEY, small, bad)


def test_salt_and_pepper():
    x = jnp.full((200, 50), 0.5)

    @jax.jit
    def run(key, ps):
        return {
            "noisy": A.salt_and_pepper(key, x, 0.3),
            "all": A.salt_and_pepper(key, x, 1.0, low=-1.0, high=2.0),
            "by_p": jax.vmap(lambda p: A.salt_and_pepper(key, x, p))(ps),
        }

    out = jax.tree.map(np.asarray, run(KEY, jnp.array([0.0, 0.3])))
    noisy = out["noisy"]
    changed = noisy != 0.5
    assert changed.mean() == pytest.approx(0.3, abs=0.02)
    assert set(np.unique(noisy[changed])) == {0.0, 1.0}
    assert (noisy[changed] == 1.0).mean() == pytest.approx(0.5, abs=0.05)
    assert set(np.unique(out["all"])) == {-1.0, 2.0}
    np.testing.assert_array_equal(out["by_p"][0], x)
    np.testing.assert_array_equal(out["by_p"][1], noisy)
    for bad in (-0.5, 1.01):
        with pytest.raises(ValueError, match=r"p must be a scalar probability in \[0, 1\]"):
            A.salt_and_pepper(KEY, x, bad)
    with pytest.raises(ValueError, match="low must be <= high"):
        A.salt_and_pepper(KEY, x, 0.1, low=1.0, high=0.0)


def _uniform_shift(key, x):
    return x + jax.random.uniform(key, x.shape)


def test_worst_of_k_keeps_the_highest_loss():
    x = jnp.array([[0.0, 0.0], [1.0, -1.0], [2.0, 2.0]])
    a = jnp.array([1.0, -2.0])

    def loss_fn(z):  # per-example losses, shape (N,)
        return jnp.square(z @ a)

    @jax.jit
    def run(key, w):
        def chosen(w, k):
            return A.worst_of_k(key, x, lambda z: jnp.square(z @ w), _uniform_shift, k)

        # the candidates written out: candidate j uses fold_in(key, j)
        candidates = jnp.stack([_uniform_shift(jax.random.fold_in(key, j), x) for j in range(5)])
        # the training gradient is taken at the chosen input, not through the choice
        grad = jax.grad(lambda w: jnp.mean(jnp.square(chosen(w, 5) @ w)))(w)
        return chosen(w, 5), chosen(w, 1), candidates, grad

    worst, one, candidates, grad = map(np.asarray, run(KEY, a))
    losses = np.square(candidates @ np.asarray(a))  # (k, N)
    expected = candidates[np.argmax(losses, axis=0), np.arange(3)]
    np.testing.assert_allclose(worst, expected, rtol=1e-6)
    assert np.all(np.square(worst @ np.asarray(a)) >= losses.max(axis=0) - 1e-6)
    # k = 1 is the plain random transformation
    np.testing.assert_allclose(one, candidates[0], rtol=1e-6)
    # d/dw mean((x~ . w)^2) at the fixed chosen x~ = 2 mean((x~ . w) x~)
    expected_grad = 2 * np.mean((expected @ np.asarray(a))[:, None] * expected, axis=0)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5)
    with pytest.raises(ValueError, match="k must be >= 1"):
        A.worst_of_k(KEY, x, loss_fn, _uniform_shift, 0)
    with pytest.raises(TypeError, match="k must be a Python int"):
        A.worst_of_k(KEY, x, loss_fn, _uniform_shift, 2.0)
    with pytest.raises(ValueError, match=r"loss_fn must return one loss per example, shape \(3,\)"):
        A.worst_of_k(KEY, x, lambda z: jnp.sum(z), _uniform_shift, 2)
    with pytest.raises(ValueError, match="perturb must return an array of x's shape"):
        A.worst_of_k(KEY, x, loss_fn, lambda k, z: z[:2], 2)


def test_adversarial_pgd_linear_loss():
    # l(z) = z . a: the maximiser in the ball is x + eps a / ||a||_2 (l2), x + eps sign(a) (linf)
    x = jnp.array([[0.0, 0.0, 0.0], [1.0, -1.0, 0.5]])
    a = jnp.array([3.0, -4.0, 0.0])

    def loss_fn(z):
        return z @ a

    def one_step(eps, norm):
        return A.adversarial_pgd(
            KEY, x, loss_fn, eps, steps=1, step_size=eps, norm=norm, random_start=False
        )

    @jax.jit
    def attacks(eps_grid):
        return {
            "l2": one_step(0.5, "l2"),
            "linf": one_step(0.1, "linf"),
            "l2_random": A.adversarial_pgd(KEY, x, loss_fn, 0.5, steps=3, norm="l2"),
            "linf_random": A.adversarial_pgd(KEY, x, loss_fn, 0.1, steps=3, norm="linf"),
            # epsilon is data: vmap over epsilon
            "by_eps": jax.vmap(lambda e: one_step(e, "l2"))(eps_grid),
            # bounds clip to the valid input range
            "clipped": A.adversarial_pgd(KEY, x, loss_fn, 2.0, steps=2, norm="linf", bounds=(0, 1)),
        }

    out = attacks(jnp.array([0.0, 0.5]))
    np.testing.assert_allclose(out["l2"], x + 0.5 * a[None] / 5.0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["linf"], x + 0.1 * jnp.sign(a)[None], rtol=1e-6, atol=1e-6)
    norms = np.linalg.norm(np.asarray(out["l2_random"] - x), axis=1)
    assert np.all(norms <= 0.5 + 1e-5)
    assert np.abs(np.asarray(out["linf_random"] - x)).max() <= 0.1 + 1e-6
    for name in ("l2_random", "linf_random"):
        assert np.all(np.asarray(loss_fn(out[name]) - loss_fn(x)) > 0), name
    np.testing.assert_allclose(out["by_eps"][0], x)
    np.testing.assert_allclose(out["by_eps"][1], out["l2"], rtol=1e-6)
    assert float(out["clipped"].min()) >= 0.0 and float(out["clipped"].max()) <= 1.0
    with pytest.raises(ValueError, match="epsilon must be finite and >= 0"):
        A.adversarial_pgd(KEY, x, loss_fn, -0.1)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        A.adversarial_pgd(KEY, x, loss_fn, 0.1, steps=0)
    with pytest.raises(ValueError, match="step_size must be > 0"):
        A.adversarial_pgd(KEY, x, loss_fn, 0.1, step_size=0.0)
    with pytest.raises(ValueError, match="norm must be 'l2' or 'linf'"):
        A.adversarial_pgd(KEY, x, loss_fn, 0.1, norm="l1")
    with pytest.raises(ValueError, match="bounds must be"):
        A.adversarial_pgd(KEY, x, loss_fn, 0.1, bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="loss_fn must return one loss per example"):
        A.adversarial_pgd(KEY, x, lambda z: z, 0.1)


def test_adversarial_unconstrained_linear_loss_closed_form_under_jit_and_vmap():
    # l(z) = z . a: J(theta) = (x + theta) . a - w ||theta||^2 / (2 sigma^2) is maximised at
    # theta* = sigma^2 a / w; one step from 0 gives eta sigma^2 a / (1 + eta w).
    x = jnp.array([[0.0, 0.0, 0.0], [1.0, -1.0, 0.5]])
    a = jnp.array([3.0, -4.0, 0.0])

    def loss_fn(z):
        return z @ a

    def attack(sigma, weight, eta, steps):
        return A.adversarial_unconstrained(
            KEY, x, loss_fn, sigma, weight, steps=steps, step_size=eta, random_start=False
        )

    # sigma, weight and step_size are data: one compiled program for the whole grid.
    sigma = jnp.array([0.5, 0.1, 1.0])
    weight = jnp.array([1.0, 2.0, 0.0])
    eta = jnp.array([1.0, 0.5, 0.25])
    one = jax.jit(jax.vmap(lambda s, w, e: attack(s, w, e, 1)))(sigma, weight, eta)
    for i in range(3):
        s, w, e = float(sigma[i]), float(weight[i]), float(eta[i])
        expected = x + e * s**2 * a[None] / (1 + e * w)
        np.testing.assert_allclose(one[i], expected, rtol=1e-6, atol=1e-7)
    many = jax.jit(jax.vmap(lambda s, w: attack(s, w, 1.0, 40)))(sigma[:2], weight[:2])
    for i in range(2):
        expected = x + float(sigma[i]) ** 2 * a[None] / float(weight[i])
        np.testing.assert_allclose(many[i], expected, rtol=1e-5, atol=1e-6)


def test_adversarial_unconstrained_increases_the_weighted_objective():
    # A nonlinear per-example loss: softplus of a random linear score.
    kx, kw = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (16, 8))
    a = jax.random.normal(kw, (8,))

    def loss_fn(z):
        return jax.nn.softplus(z @ a)

    sigma, weight = 0.5, 2.0

    def objective(theta):  # l(x + theta) + w log p(theta), up to the constant of log p
        return loss_fn(x + theta) - weight * jnp.sum(theta**2, axis=1) / (2 * sigma**2)

    for random_start in (False, True):
        out = A.adversarial_unconstrained(
            KEY, x, loss_fn, sigma, weight, steps=5, random_start=random_start
        )
        start = sigma * jax.random.normal(KEY, x.shape) if random_start else jnp.zeros_like(x)
        gain = np.asarray(objective(out - x) - objective(start))
        assert np.all(gain > 0), random_start
        assert np.all(np.asarray(loss_fn(out)) > np.asarray(loss_fn(x)))  # a harder input
    # The weight on log p dominates: the noise vanishes and the clean input comes back.
    clean = A.adversarial_unconstrained(KEY, x, loss_fn, sigma, 1e8, steps=3)
    np.testing.assert_allclose(clean, x, atol=1e-6)
    # The gradient of a loss at the chosen input does not flow through the search.
    g = jax.grad(lambda z: jnp.sum(A.adversarial_unconstrained(KEY, z, loss_fn, sigma)))(x)
    np.testing.assert_array_equal(g, np.zeros_like(x))
    for kwargs, match in (
        ({"sigma": 0.0}, "sigma must be finite and > 0"),
        ({"sigma": 0.5, "weight": -1.0}, "weight must be finite and >= 0"),
        ({"sigma": 0.5, "step_size": 0.0}, "step_size must be finite and > 0"),
        ({"sigma": 0.5, "steps": 0}, "steps must be an integer >= 1"),
    ):
        with pytest.raises(ValueError, match=match):
            A.adversarial_unconstrained(KEY, x, loss_fn, **kwargs)
