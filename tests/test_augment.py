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
    # x~ = x + sigma * z with z the key's standard normal draw
    z = jax.random.normal(KEY, x.shape)
    np.testing.assert_allclose(A.gaussian_noise(KEY, x, 0.5), x + 0.5 * z, rtol=1e-6)
    sigma = jnp.array([0.0, 0.5, 2.0])
    np.testing.assert_allclose(A.gaussian_noise(KEY, x, sigma), x + sigma[None] * z, rtol=1e-6)
    # diagonal Sigma = diag(sigma^2): per-feature standard deviations; sigma 0 leaves x unchanged
    big = jnp.ones((20000, 3))
    noisy = jax.jit(A.gaussian_noise)(KEY, big, sigma)
    np.testing.assert_allclose(np.std(np.asarray(noisy), axis=0), sigma, rtol=0.03)
    np.testing.assert_array_equal(noisy[:, 0], big[:, 0])
    # sigma is data: vmap over sigma equals separate calls
    sigmas = jnp.array([0.1, 1.0])
    batched = jax.vmap(lambda s: A.gaussian_noise(KEY, x, s))(sigmas)
    np.testing.assert_allclose(batched[1], A.gaussian_noise(KEY, x, 1.0), rtol=1e-6)
    # gradients flow to x (identity) and sigma (the noise)
    with jax.enable_x64(True):
        x64 = np.asarray(x, np.float64)
        check_grads(lambda a, s: A.gaussian_noise(KEY, a, s), (x64, 0.3), order=1, modes=("rev",))
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
    masked = jax.jit(A.masking_noise)(KEY, x, 0.25)
    kept = np.asarray(masked)[np.asarray(masked) != 0]
    # survivors keep their value exactly (dropout would give 1 / (1 - p) = 4/3)
    np.testing.assert_array_equal(kept, 1.0)
    assert 1 - kept.size / x.size == pytest.approx(0.25, abs=0.02)
    # the same mask as the Bernoulli(1 - p) draw of the key
    keep = jax.random.bernoulli(KEY, 0.75, x.shape)
    np.testing.assert_array_equal(masked, jnp.where(keep, x, 0.0))
    small = jnp.array([[1.0, -2.0, 3.0]])
    np.testing.assert_array_equal(A.masking_noise(KEY, small, 0.0), small)
    np.testing.assert_array_equal(A.masking_noise(KEY, small, 1.0), jnp.zeros((1, 3)))
    # p is data: vmap over p
    by_p = jax.vmap(lambda p: A.masking_noise(KEY, small, p))(jnp.array([0.0, 1.0]))
    np.testing.assert_array_equal(by_p, jnp.stack([small, jnp.zeros((1, 3))]))
    # gradient with respect to x is the mask
    with jax.enable_x64(True):
        s64 = np.asarray(small, np.float64)
        check_grads(lambda a: A.masking_noise(KEY, a, 0.5), (s64,), order=1, modes=("rev",))
    for bad in (-0.1, 1.5, jnp.array([0.1, 0.2])):
        with pytest.raises(ValueError, match=r"p must be a scalar probability in \[0, 1\]"):
            A.masking_noise(KEY, small, bad)


def test_salt_and_pepper():
    x = jnp.full((200, 50), 0.5)
    noisy = np.asarray(jax.jit(A.salt_and_pepper)(KEY, x, 0.3))
    changed = noisy != 0.5
    assert changed.mean() == pytest.approx(0.3, abs=0.02)
    assert set(np.unique(noisy[changed])) == {0.0, 1.0}
    assert (noisy[changed] == 1.0).mean() == pytest.approx(0.5, abs=0.05)
    np.testing.assert_array_equal(A.salt_and_pepper(KEY, x, 0.0), x)
    everything = np.asarray(A.salt_and_pepper(KEY, x, 1.0, low=-1.0, high=2.0))
    assert set(np.unique(everything)) == {-1.0, 2.0}
    by_p = jax.vmap(lambda p: A.salt_and_pepper(KEY, x, p))(jnp.array([0.0, 0.3]))
    np.testing.assert_array_equal(by_p[1], noisy)
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

    worst = jax.jit(lambda key, z: A.worst_of_k(key, z, loss_fn, _uniform_shift, 5))(KEY, x)
    # the candidates written out: candidate j uses fold_in(key, j)
    candidates = np.stack([_uniform_shift(jax.random.fold_in(KEY, j), x) for j in range(5)])
    losses = np.square(candidates @ np.asarray(a))  # (k, N)
    expected = candidates[np.argmax(losses, axis=0), np.arange(3)]
    np.testing.assert_allclose(worst, expected, rtol=1e-6)
    assert np.all(np.asarray(loss_fn(worst)) >= losses.max(axis=0) - 1e-6)
    # k = 1 is the plain random transformation
    one = A.worst_of_k(KEY, x, loss_fn, _uniform_shift, 1)
    np.testing.assert_allclose(one, _uniform_shift(jax.random.fold_in(KEY, 0), x), rtol=1e-6)

    # the training gradient is taken at the chosen input, not through the choice
    def train_loss(w):
        chosen = A.worst_of_k(KEY, x, lambda z: jnp.square(z @ w), _uniform_shift, 5)
        return jnp.mean(jnp.square(chosen @ w))

    expected_grad = jax.grad(lambda w: jnp.mean(jnp.square(jnp.asarray(expected) @ w)))(a)
    np.testing.assert_allclose(jax.grad(train_loss)(a), expected_grad, rtol=1e-5)
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

    def attack(eps, norm):
        one_step = A.adversarial_pgd(
            KEY, x, loss_fn, eps, steps=1, step_size=eps, norm=norm, random_start=False
        )
        from_random = A.adversarial_pgd(KEY, x, loss_fn, eps, steps=3, norm=norm)
        return one_step, from_random

    run = jax.jit(attack, static_argnums=1)
    one_step, from_random = run(0.5, "l2")
    np.testing.assert_allclose(one_step, x + 0.5 * a[None] / 5.0, rtol=1e-6, atol=1e-6)
    norms = np.linalg.norm(np.asarray(from_random - x), axis=1)
    assert np.all(norms <= 0.5 + 1e-5)
    assert np.all(np.asarray(loss_fn(from_random) - loss_fn(x)) > 0)
    one_step, from_random = run(0.1, "linf")
    np.testing.assert_allclose(one_step, x + 0.1 * jnp.sign(a)[None], rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(from_random - x)).max() <= 0.1 + 1e-6
    # epsilon is data: vmap over epsilon; epsilon 0 leaves x unchanged
    by_eps = jax.vmap(lambda e: attack(e, "l2")[0])(jnp.array([0.0, 0.5]))
    np.testing.assert_allclose(by_eps[0], x)
    np.testing.assert_allclose(by_eps[1], x + 0.5 * a[None] / 5.0, rtol=1e-6, atol=1e-6)
    # bounds clip to the valid input range
    clipped = A.adversarial_pgd(KEY, x, loss_fn, 2.0, steps=2, norm="linf", bounds=(0.0, 1.0))
    assert float(clipped.min()) >= 0.0 and float(clipped.max()) <= 1.0
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
