"""Data transformations with stochastic parameters: x~ = t_theta(x), theta drawn per call.

Each function takes an explicit PRNG key and a batch x of shape (N, ...) (examples on the
first axis) and is pure, jittable and vmappable over its numeric parameters (sigma, p,
epsilon may be traced). Concrete parameters are validated at the call: probabilities outside
[0, 1], negative scales and shapes that do not match the batch raise ``ValueError``.

The *adaptive* transformations choose the perturbation that maximises the current loss: the
course's adaptive-stochastic (``worst_of_k``), adaptive-constrained (``adversarial_pgd``) and
adaptive-unconstrained (``adversarial_unconstrained``) branches. They return
``stop_gradient`` inputs: the training gradient is taken at the chosen input, not through the
search for it.

References:
    Vincent et al., *Stacked denoising autoencoders*, JMLR 11, 2010 (masking, salt-and-pepper).
    Bishop, *Training with noise is equivalent to Tikhonov regularization*, 1995.
    Goodfellow, Shlens, Szegedy, *Explaining and harnessing adversarial examples*, ICLR 2015.
    Madry et al., *Towards deep learning models resistant to adversarial attacks*, ICLR 2018.
    Parikh, Boyd, *Proximal algorithms*, Foundations and Trends in Optimization 1(3), 2014.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jdl.hyperparams import is_traced

__all__ = [
    "adversarial_pgd",
    "adversarial_unconstrained",
    "gaussian_noise",
    "masking_noise",
    "salt_and_pepper",
    "worst_of_k",
]


def _check_batch(x: jax.typing.ArrayLike) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have a leading batch axis, got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}")
    return x


def _check_probability(name: str, p: jax.typing.ArrayLike) -> None:
    if is_traced(p):
        return
    arr = np.asarray(p)
    if arr.ndim != 0 or not 0.0 <= float(arr) <= 1.0:
        raise ValueError(f"{name} must be a scalar probability in [0, 1], got {p!r}")


def _check_nonnegative(name: str, value: jax.typing.ArrayLike) -> None:
    if is_traced(value):
        return
    arr = np.asarray(value)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def _check_positive(name: str, value: jax.typing.ArrayLike) -> None:
    if is_traced(value):
        return
    arr = np.asarray(value)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")


def gaussian_noise(
    key: jax.Array, x: jax.typing.ArrayLike, sigma: jax.typing.ArrayLike
) -> jax.Array:
    """Additive Gaussian input noise: x~ = x + theta, theta ~ N(0, Sigma).

    A scalar sigma gives the isotropic Sigma = sigma^2 I; an array sigma broadcastable to one
    example's shape x.shape[1:] (e.g. one value per feature) gives the diagonal
    Sigma = diag(sigma^2). For small sigma, training on x~ with the squared error is
    equivalent to a Tikhonov penalty sigma^2 E ||d f / d x||^2 (Bishop 1995).

    Args:
        key: PRNG key.
        x: batch, shape (N, ...), floating point.
        sigma: standard deviation(s) >= 0: scalar or broadcastable to x.shape[1:].

    Returns:
        x~, same shape and dtype as x.

    Reference: Bishop 1995; Goodfellow et al., *Deep Learning*, sec. 7.4.
    """
    x = _check_batch(x)
    _check_nonnegative("sigma", sigma)
    sigma = jnp.asarray(sigma, x.dtype)
    try:
        ok = np.broadcast_shapes(sigma.shape, x.shape[1:]) == x.shape[1:]
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"sigma must be a scalar or broadcastable to one example's shape {x.shape[1:]}, "
            f"got shape {sigma.shape}"
        )
    sigma = jnp.broadcast_to(sigma.reshape((1,) * (x.ndim - sigma.ndim) + sigma.shape), x.shape)
    return x + sigma * jax.random.normal(key, x.shape, x.dtype)


def masking_noise(key: jax.Array, x: jax.typing.ArrayLike, p: jax.typing.ArrayLike) -> jax.Array:
    """Masking noise: each component is set to 0 with probability p, *without* rescaling.

    x~_i = m_i x_i, m_i ~ Bernoulli(1 - p). Unlike dropout there is no 1/(1 - p) factor:
    the denoising autoencoder must reconstruct x from the corrupted x~ itself.

    Args:
        key: PRNG key.
        x: batch, shape (N, ...), floating point.
        p: masking probability in [0, 1] (may be traced).

    Returns:
        x~, same shape and dtype as x.

    Reference: Vincent et al., JMLR 2010, sec. 4.2.
    """
    x = _check_batch(x)
    _check_probability("p", p)
    keep = jax.random.bernoulli(key, 1.0 - jnp.asarray(p), x.shape)
    return jnp.where(keep, x, jnp.zeros((), x.dtype))


def salt_and_pepper(
    key: jax.Array,
    x: jax.typing.ArrayLike,
    p: jax.typing.ArrayLike,
    *,
    low: float = 0.0,
    high: float = 1.0,
) -> jax.Array:
    """Salt-and-pepper noise: a fraction p of components set to their minimum or maximum.

    x~_i = x_i with probability 1 - p; otherwise low or high with probability 1/2 each.

    Args:
        key: PRNG key.
        x: batch, shape (N, ...), floating point.
        p: corruption probability in [0, 1] (may be traced).
        low: the "pepper" value (the data's minimum).
        high: the "salt" value (the data's maximum), high >= low.

    Returns:
        x~, same shape and dtype as x.

    Reference: Vincent et al., JMLR 2010, sec. 4.2.
    """
    x = _check_batch(x)
    _check_probability("p", p)
    if not low <= high:
        raise ValueError(f"low must be <= high, got low={low!r}, high={high!r}")
    corrupt_key, salt_key = jax.random.split(key)
    corrupt = jax.random.bernoulli(corrupt_key, jnp.asarray(p), x.shape)
    salt = jax.random.bernoulli(salt_key, 0.5, x.shape)
    noise = jnp.where(salt, jnp.asarray(high, x.dtype), jnp.asarray(low, x.dtype))
    return jnp.where(corrupt, noise, x)


def _check_losses(loss_fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> None:
    out = jax.eval_shape(loss_fn, jax.ShapeDtypeStruct(x.shape, x.dtype))
    if out.shape != x.shape[:1]:
        raise ValueError(
            f"loss_fn must return one loss per example, shape {x.shape[:1]}, got {out.shape}"
        )


def worst_of_k(
    key: jax.Array,
    x: jax.typing.ArrayLike,
    loss_fn: Callable[[jax.Array], jax.Array],
    perturb: Callable[[jax.Array, jax.Array], jax.Array],
    k: int,
) -> jax.Array:
    """Worst-of-k augmentation: draw k perturbations per example, keep the one of highest loss.

    x~^(j) = t_{theta_j}(x), theta_1..theta_k i.i.d.;  x~_n = x~_n^(j*),
    j* = argmax_j l(f_w(x~_n^(j)), y_n). With k = 1 it is the plain random augmentation.

    Args:
        key: PRNG key; perturbation j uses ``jax.random.fold_in(key, j)``.
        x: batch, shape (N, ...), floating point.
        loss_fn: per-example loss at the current parameters, ``x -> (N,)`` (close over the
            parameters and labels).
        perturb: ``perturb(key, x) -> x~`` with x's shape, e.g.
            ``lambda k, x: gaussian_noise(k, x, 0.1)``.
        k: number of candidates per example, a Python int >= 1.

    Returns:
        The chosen inputs, shape of x, with ``stop_gradient`` applied.

    Reference: the course's adaptive data transformations; Fawzi et al., *Adaptive data
    augmentation for image classification*, ICIP 2016.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"k must be a Python int (it sets a shape), got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x = _check_batch(x)
    out = jax.eval_shape(perturb, key, jax.ShapeDtypeStruct(x.shape, x.dtype))
    if out.shape != x.shape:
        raise ValueError(f"perturb must return an array of x's shape {x.shape}, got {out.shape}")
    _check_losses(loss_fn, x)
    candidates = jax.vmap(lambda j: perturb(jax.random.fold_in(key, j), x))(jnp.arange(k))
    losses = jax.vmap(loss_fn)(candidates)  # (k, N)
    best = jnp.argmax(losses, axis=0)  # (N,)
    chosen = candidates[best, jnp.arange(x.shape[0])]
    return jax.lax.stop_gradient(chosen)


def _per_example_norm(v: jax.Array) -> jax.Array:
    """L2 norm of each example, shape (N, 1, ..., 1) for explicit broadcasting."""
    sq = jnp.sum(jnp.square(v).reshape(v.shape[0], -1), axis=1)
    return jnp.sqrt(sq).reshape((v.shape[0],) + (1,) * (v.ndim - 1))


def adversarial_pgd(
    key: jax.Array,
    x: jax.typing.ArrayLike,
    loss_fn: Callable[[jax.Array], jax.Array],
    epsilon: jax.typing.ArrayLike,
    *,
    steps: int = 3,
    step_size: jax.typing.ArrayLike | None = None,
    norm: str = "l2",
    random_start: bool = True,
    bounds: tuple[float, float] | None = None,
) -> jax.Array:
    """Constrained worst case: projected gradient ascent of the loss within a norm ball.

    x~ = argmax_{||x' - x|| <= epsilon} l(f_w(x'), y), approximated per example by
        x^(0) = x (+ a uniform random start in the ball),
        x^(t+1) = Pi_{B(x, epsilon)}(x^(t) + alpha d^(t)),
    with d = g / ||g||_2 ("l2") or d = sign(g) ("linf"), g = d l / d x at x^(t), and Pi the
    projection onto the ball (rescaling for l2, clipping for linf), then onto ``bounds``.

    Args:
        key: PRNG key for the random start.
        x: batch, shape (N, ...), floating point.
        loss_fn: per-example loss at the current parameters, ``x -> (N,)``, rows independent.
        epsilon: radius >= 0 of the ball (may be traced).
        steps: number of ascent steps, a Python int >= 1.
        step_size: alpha > 0; default 2.5 epsilon / steps (Madry et al.).
        norm: "l2" or "linf".
        random_start: start from a uniform random point of the ball instead of x.
        bounds: optional (low, high) range of valid inputs, e.g. (0.0, 1.0) for pixels.

    Returns:
        The perturbed inputs, shape of x, with ``stop_gradient`` applied.

    Reference: Goodfellow et al., ICLR 2015; Madry et al., ICLR 2018.
    """
    x = _check_batch(x)
    _check_nonnegative("epsilon", epsilon)
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    concrete_step = step_size is not None and not is_traced(step_size)
    if concrete_step and not float(np.asarray(step_size)) > 0:
        raise ValueError(f"step_size must be > 0, got {step_size!r}")
    if norm not in ("l2", "linf"):
        raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}")
    if bounds is not None and not bounds[0] < bounds[1]:
        raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}")
    _check_losses(loss_fn, x)
    epsilon = jnp.asarray(epsilon, x.dtype)
    alpha = 2.5 * epsilon / steps if step_size is None else jnp.asarray(step_size, x.dtype)
    tiny = jnp.finfo(x.dtype).tiny

    def project(z: jax.Array) -> jax.Array:
        delta = z - x
        if norm == "l2":
            norms = _per_example_norm(delta)
            delta = delta * jnp.minimum(1.0, epsilon / jnp.maximum(norms, tiny))
        else:
            delta = jnp.clip(delta, -epsilon, epsilon)
        z = x + delta
        return z if bounds is None else jnp.clip(z, bounds[0], bounds[1])

    if not random_start:
        start = x
    elif norm == "linf":
        start = project(x + jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0) * epsilon)
    else:
        dir_key, radius_key = jax.random.split(key)
        direction = jax.random.normal(dir_key, x.shape, x.dtype)
        direction = direction / jnp.maximum(_per_example_norm(direction), tiny)
        dim = int(np.prod(x.shape[1:]))
        u = jax.random.uniform(radius_key, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype)
        start = project(x + direction * (epsilon * u ** (1.0 / dim)))

    grad_fn = jax.grad(lambda z: jnp.sum(loss_fn(z)))

    def ascent(_, z):
        g = grad_fn(z)
        d = g / jnp.maximum(_per_example_norm(g), tiny) if norm == "l2" else jnp.sign(g)
        return project(z + alpha * d)

    return jax.lax.stop_gradient(jax.lax.fori_loop(0, steps, ascent, start))


def adversarial_unconstrained(
    key: jax.Array,
    x: jax.typing.ArrayLike,
    loss_fn: Callable[[jax.Array], jax.Array],
    sigma: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike = 1.0,
    *,
    steps: int = 3,
    step_size: jax.typing.ArrayLike = 1.0,
    random_start: bool = True,
) -> jax.Array:
    r"""Unconstrained worst case: the noise that maximises the loss weighted by its probability.

    x~ = x + theta*, theta* = argmax_theta  l(f_w(x + theta), y) + lambda log p(theta),
    p = N(0, sigma^2 I), so lambda log p(theta) = -lambda ||theta||^2 / (2 sigma^2) + const:
    no ball, no projection; large noise is merely improbable. Per example, ``steps`` ascent
    steps from theta^(0) = sigma * jax.random.normal(key, x.shape) (or 0):

        theta^(t+1) = (theta^(t) + eta sigma^2 g^(t)) / (1 + eta lambda),
        g^(t) = d l / d x at x + theta^(t),

    a gradient step on the loss preconditioned by the prior's covariance sigma^2 I, with the
    log-prior term taken implicitly. Its fixed points are those of plain gradient ascent
    (theta = sigma^2 g / lambda); for a linear loss l = a . x it converges to that maximiser.
    As lambda grows theta -> 0: the clean input.

    Args:
        key: PRNG key for the random start.
        x: batch, shape (N, ...), floating point.
        loss_fn: per-example loss at the current parameters, ``x -> (N,)``, rows independent.
        sigma: scale > 0 of the Gaussian p (may be traced).
        weight: lambda >= 0, the weight of log p (may be traced); 0 is plain loss ascent.
        steps: number of ascent steps, a Python int >= 1.
        step_size: eta > 0 (may be traced).
        random_start: start from a draw of p instead of theta = 0.

    Returns:
        The perturbed inputs, shape of x, with ``stop_gradient`` applied.

    Reference: the course's adaptive-unconstrained data noise; Goodfellow et al., ICLR 2015
    (the loss-ascent step); Parikh and Boyd 2014, section 4.2 (the implicit, proximal step).
    """
    x = _check_batch(x)
    _check_positive("sigma", sigma)
    _check_nonnegative("weight", weight)
    _check_positive("step_size", step_size)
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    _check_losses(loss_fn, x)
    sigma = jnp.asarray(sigma, x.dtype)
    weight = jnp.asarray(weight, x.dtype)
    eta = jnp.asarray(step_size, x.dtype)
    start = sigma * jax.random.normal(key, x.shape, x.dtype) if random_start else jnp.zeros_like(x)
    grad_fn = jax.grad(lambda z: jnp.sum(loss_fn(z)))

    def ascent(_, theta):
        # The explicit step theta + eta (sigma^2 g - lambda theta) diverges once eta lambda > 2;
        # the implicit (proximal) step on the quadratic log-prior is stable for every lambda.
        return (theta + eta * sigma**2 * grad_fn(x + theta)) / (1.0 + eta * weight)

    return jax.lax.stop_gradient(x + jax.lax.fori_loop(0, steps, ascent, start))
