"""Penalty terms R added to the empirical risk: L(w) = (1/N) sum_n l(f_w(x_n), y_n) + R(w).

Every penalty returns a scalar and takes its coefficient as data: a Python float, or a jax
array that may be traced (``jax.vmap`` over coefficients in a hyper-parameter search). Concrete
coefficients are validated (a negative one raises ``ValueError``); traced ones are not
inspected.

Which leaves of a parameter pytree count as "weights" is chosen by a mask, as in
``optax.masked``: a pytree of booleans with the structure of the parameters (or a prefix of
it), a callable ``params -> mask``, or ``None`` for every leaf. The default, ``kernels_only``,
keeps the leaves with two or more dimensions (dense and convolution kernels, embeddings) and
leaves out biases and normalisation scales.

References:
    Goodfellow, Bengio, Courville, *Deep Learning*, ch. 7 (2016).
    Ng, *Sparse autoencoder*, CS294A lecture notes (2011).
    Rifai et al., *Contractive auto-encoders*, ICML 2011.
    Hutchinson, *A stochastic estimator of the trace of the influence matrix*, 1989.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jdl.hyperparams import check_coefficient, is_traced

Params = Any
Mask = (
    Any  # a pytree of bools (a prefix of the params' structure), a callable params -> mask, or None
)

__all__ = [
    "activation_l1",
    "jacobian_penalty",
    "jacobian_penalty_estimate",
    "kernels_only",
    "kl_sparsity",
    "l1_penalty",
    "l2_penalty",
    "output_penalty",
    "sigmoid_contractive_penalty",
    "weight_jacobian_penalty",
]


def _check_batch(name: str, x: jax.Array) -> None:
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(
            f"{name} must have a leading batch axis with at least one example, got shape {x.shape}"
        )


def kernels_only(params: Params) -> Params:
    """Default weight mask: m(w) = [ndim(w) >= 2], True for kernels, False for biases/scales.

    Biases are left out because each controls one unit and they need no regularization to
    generalize; penalizing them can cause underfitting.

    Args:
        params: parameter pytree.

    Returns:
        A pytree of Python bools with the structure of ``params``, e.g.
        ``kernels_only({"kernel": W, "bias": b}) == {"kernel": True, "bias": False}``.

    Reference: Goodfellow et al., *Deep Learning*, sec. 7.1; the ``mask`` of ``optax.masked``.
    """
    return jax.tree_util.tree_map(lambda p: jnp.ndim(p) >= 2, params)


def _selected_leaves(tree: Params, params: Params, mask: Mask) -> list[jax.Array]:
    """Leaves of ``tree`` (the params' structure) whose mask entry is True."""
    if mask is None:
        return jax.tree_util.tree_leaves(tree)
    mask_tree = mask(params) if callable(mask) else mask
    flat_mask, treedef = jax.tree_util.tree_flatten(mask_tree)
    try:
        subtrees = treedef.flatten_up_to(tree)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"mask must have the structure of the parameters (or a prefix of it): {err}"
        ) from None
    leaves = []
    for m, sub in zip(flat_mask, subtrees, strict=True):
        if is_traced(m) or np.ndim(m) != 0:
            raise TypeError(f"mask leaves must be concrete booleans, got {m!r}")
        if bool(m):
            leaves.extend(jax.tree_util.tree_leaves(sub))
    return leaves


def l2_penalty(
    params: Params, coefficient: jax.typing.ArrayLike = 1.0, *, mask: Mask = kernels_only
) -> jax.Array:
    """Squared L2 norm of the weights (ridge, weight decay): R(w) = (lambda / 2) ||w||_2^2.

    R(w) = (lambda / 2) sum_i w_i^2 over the masked leaves, so grad R = lambda * w: with plain
    SGD at learning rate eta the step w <- w - eta (grad L + lambda w) is the decoupled weight
    decay w <- (1 - eta lambda) w - eta grad L.

    Args:
        params: parameter pytree.
        coefficient: lambda >= 0 (float or array, may be traced).
        mask: which leaves are weights (see the module docstring); default ``kernels_only``.

    Returns:
        A scalar.

    Example:
        ``l2_penalty({"kernel": jnp.array([[3.0, 4.0]]), "bias": jnp.ones(2)}, 0.1)`` is
        0.05 * (9 + 16) = 1.25 (the bias is left out by ``kernels_only``).

    Reference: Goodfellow et al., *Deep Learning*, sec. 7.1.1.
    """
    check_coefficient("coefficient", coefficient)
    leaves = _selected_leaves(params, params, mask)
    total = sum((jnp.sum(jnp.square(p)) for p in leaves), start=jnp.zeros(()))
    return 0.5 * coefficient * total


def l1_penalty(
    params: Params, coefficient: jax.typing.ArrayLike = 1.0, *, mask: Mask = kernels_only
) -> jax.Array:
    """L1 norm of the weights (lasso): R(w) = lambda ||w||_1 = lambda sum_i |w_i|.

    Its subgradient lambda * sign(w) drives small weights to exactly zero (sparse weights).

    Args:
        params: parameter pytree.
        coefficient: lambda >= 0 (float or array, may be traced).
        mask: which leaves are weights (see the module docstring); default ``kernels_only``.

    Returns:
        A scalar.

    Reference: Tibshirani, *Regression shrinkage and selection via the lasso*, 1996;
    Goodfellow et al., *Deep Learning*, sec. 7.1.2.
    """
    check_coefficient("coefficient", coefficient)
    leaves = _selected_leaves(params, params, mask)
    total = sum((jnp.sum(jnp.abs(p)) for p in leaves), start=jnp.zeros(()))
    return coefficient * total


def activation_l1(h: jax.typing.ArrayLike, coefficient: jax.typing.ArrayLike = 1.0) -> jax.Array:
    """L1 sparsity of a layer's activations: R = lambda (1/N) sum_n sum_j |h_j(x_n)|.

    Args:
        h: activations, shape (N, ...) with the batch axis first.
        coefficient: lambda >= 0.

    Returns:
        A scalar (sum over units, mean over the batch).

    Reference: Goodfellow et al., *Deep Learning*, sec. 7.10 (representational sparsity).
    """
    check_coefficient("coefficient", coefficient)
    h = jnp.asarray(h)
    _check_batch("h", h)
    per_example = jnp.sum(jnp.abs(h).reshape(h.shape[0], -1), axis=1)
    return coefficient * jnp.mean(per_example)


def kl_sparsity(
    h: jax.typing.ArrayLike, rho: jax.typing.ArrayLike, coefficient: jax.typing.ArrayLike = 1.0
) -> jax.Array:
    """KL sparsity penalty of the sparse autoencoder, towards a target mean activation rho.

    rho_hat_j = (1/N) sum_n h_j(x_n) (activations in (0, 1), e.g. sigmoid units);
    R = beta sum_j KL(rho || rho_hat_j),
    KL(rho || rho_hat) = rho log(rho / rho_hat) + (1 - rho) log((1 - rho) / (1 - rho_hat)).

    rho_hat is clipped to [eps, 1 - eps] (eps the dtype's machine epsilon) so that a dead or
    saturated unit gives a large finite penalty instead of inf.

    Args:
        h: activations in [0, 1], shape (N, units...).
        rho: target mean activation, 0 < rho < 1 (may be traced).
        coefficient: beta >= 0.

    Returns:
        A scalar.

    Reference: Ng, *Sparse autoencoder*, CS294A lecture notes, 2011.
    """
    check_coefficient("coefficient", coefficient)
    if not is_traced(rho):
        r = np.asarray(rho)
        if r.ndim != 0 or not 0.0 < float(r) < 1.0:
            raise ValueError(f"rho must be a scalar with 0 < rho < 1, got {rho!r}")
    h = jnp.asarray(h)
    _check_batch("h", h)
    eps = jnp.finfo(h.dtype).eps
    rho_hat = jnp.clip(jnp.mean(h, axis=0), eps, 1.0 - eps)
    kl = rho * jnp.log(rho / rho_hat) + (1.0 - rho) * jnp.log((1.0 - rho) / (1.0 - rho_hat))
    return coefficient * jnp.sum(kl)


def output_penalty(y: jax.typing.ArrayLike, coefficient: jax.typing.ArrayLike = 1.0) -> jax.Array:
    """Penalty on the outputs y = f_w(x): R = lambda (1/N) sum_n ||f_w(x_n)||_2^2.

    Keeps the outputs (e.g. logits) small, which bounds the model's confidence.

    Args:
        y: outputs, shape (N, ...).
        coefficient: lambda >= 0.

    Returns:
        A scalar.

    Reference: Goodfellow et al., *Deep Learning*, ch. 7 (penalties on the output).
    """
    check_coefficient("coefficient", coefficient)
    y = jnp.asarray(y)
    _check_batch("y", y)
    return coefficient * jnp.mean(jnp.sum(jnp.square(y).reshape(y.shape[0], -1), axis=1))


def _per_example(fn: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    return lambda xi: fn(xi[None])[0]


def jacobian_penalty(
    fn: Callable[[jax.Array], jax.Array],
    x: jax.typing.ArrayLike,
    coefficient: jax.typing.ArrayLike = 1.0,
) -> jax.Array:
    """Exact contractive penalty: R = lambda (1/N) sum_n ||d f(x_n) / d x_n||_F^2.

    The per-example Jacobian is built with ``jax.jacrev`` when the output is smaller than the
    input (one vector-Jacobian product per output) and ``jax.jacfwd`` otherwise (one
    Jacobian-vector product per input), vmapped over the batch.

    Args:
        fn: maps a batch (N, *in) to (N, *out), each output row depending only on its own
            input row (e.g. ``lambda x: apply_fn(params, x)``).
        x: inputs, shape (N, *in).
        coefficient: lambda >= 0.

    Returns:
        A scalar.

    Reference: Rifai et al., *Contractive auto-encoders*, ICML 2011, eq. 2.
    """
    check_coefficient("coefficient", coefficient)
    x = jnp.asarray(x)
    _check_batch("x", x)
    single = _per_example(fn)
    out = jax.eval_shape(single, jax.ShapeDtypeStruct(x.shape[1:], x.dtype))
    d_in, d_out = int(np.prod(x.shape[1:])), int(np.prod(out.shape))
    jac = jax.jacrev if d_out <= d_in else jax.jacfwd
    J = jax.vmap(jac(single))(x)
    return coefficient * jnp.mean(jnp.sum(jnp.square(J).reshape(x.shape[0], -1), axis=1))


def jacobian_penalty_estimate(
    fn: Callable[[jax.Array], jax.Array],
    x: jax.typing.ArrayLike,
    key: jax.Array,
    coefficient: jax.typing.ArrayLike = 1.0,
    *,
    num_probes: int = 1,
    mode: str = "jvp",
    probe: str = "rademacher",
) -> jax.Array:
    """Unbiased random-projection estimate of the contractive penalty.

    For probes with E[v v^T] = I:  E_v ||J v||^2 = tr(J^T J) = ||J||_F^2 (mode "jvp", v in
    the input space, one forward-mode product per probe) and E_u ||u^T J||^2 = ||J||_F^2 (mode
    "vjp", u in the output space, one reverse-mode product per probe). The estimate averages
    ``num_probes`` independent probes per example:
    R_hat = lambda (1/N) sum_n (1/P) sum_p ||J_n v_np||^2.

    Rademacher probes (+-1) have a smaller variance than Gaussian ones,
    2 (||J^T J||_F^2 - sum_i (J^T J)_ii^2) instead of 2 ||J^T J||_F^2.

    Args:
        fn: maps a batch (N, *in) to (N, *out), rows independent (as in ``jacobian_penalty``).
        x: inputs, shape (N, *in).
        key: PRNG key for the probes.
        coefficient: lambda >= 0.
        num_probes: P >= 1 probes per example.
        mode: "jvp" or "vjp".
        probe: "rademacher" or "normal".

    Returns:
        A scalar whose expectation over ``key`` is ``jacobian_penalty(fn, x, coefficient)``.

    Reference: Hutchinson 1989; Rifai et al., *Higher order contractive auto-encoder*, 2011.
    """
    check_coefficient("coefficient", coefficient)
    if not isinstance(num_probes, int | np.integer) or num_probes < 1:
        raise ValueError(f"num_probes must be an integer >= 1, got {num_probes!r}")
    if mode not in ("jvp", "vjp"):
        raise ValueError(f"mode must be 'jvp' or 'vjp', got {mode!r}")
    if probe not in ("rademacher", "normal"):
        raise ValueError(f"probe must be 'rademacher' or 'normal', got {probe!r}")
    x = jnp.asarray(x)
    _check_batch("x", x)

    def draw(shape, dtype):
        if probe == "normal":
            return jax.random.normal(key, (num_probes, *shape), dtype)
        return jax.random.rademacher(key, (num_probes, *shape), dtype)

    if mode == "jvp":
        v = draw(x.shape, x.dtype)
        products = jax.vmap(lambda t: jax.jvp(fn, (x,), (t,))[1])(v)
    else:
        y, pullback = jax.vjp(fn, x)
        u = draw(y.shape, y.dtype)
        products = jax.vmap(lambda t: pullback(t)[0])(u)
    squares = jnp.sum(jnp.square(products).reshape(num_probes, x.shape[0], -1), axis=2)
    return coefficient * jnp.mean(squares)


def sigmoid_contractive_penalty(
    h: jax.typing.ArrayLike, kernel: jax.typing.ArrayLike, coefficient: jax.typing.ArrayLike = 1.0
) -> jax.Array:
    """Closed-form contractive penalty of a sigmoid layer h = sigmoid(x W + b).

    ||J(x)||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ij^2, so
    R = lambda (1/N) sum_n sum_j (h_nj (1 - h_nj))^2 sum_i W_ij^2, with no Jacobian built.

    Args:
        h: the layer's sigmoid activations, shape (N, d_h).
        kernel: W, shape (d_in, d_h).
        coefficient: lambda >= 0.

    Returns:
        A scalar equal to ``jacobian_penalty(lambda x: sigmoid(x @ W + b), x, coefficient)``.

    Reference: Rifai et al., *Contractive auto-encoders*, ICML 2011, eq. 5.
    """
    check_coefficient("coefficient", coefficient)
    h, kernel = jnp.asarray(h), jnp.asarray(kernel)
    if h.ndim != 2 or kernel.ndim != 2 or h.shape[1] != kernel.shape[1]:
        raise ValueError(
            f"h must be (N, d_h) and kernel (d_in, d_h); got h {h.shape}, kernel {kernel.shape}"
        )
    _check_batch("h", h)
    column_norms = jnp.sum(jnp.square(kernel), axis=0)
    return coefficient * jnp.mean(jnp.square(h * (1.0 - h)) @ column_norms)


def weight_jacobian_penalty(
    fn: Callable[[Params, jax.Array], jax.Array],
    params: Params,
    x: jax.typing.ArrayLike,
    coefficient: jax.typing.ArrayLike = 1.0,
    *,
    mask: Mask = kernels_only,
) -> jax.Array:
    """Penalty on the sensitivity of the output to the weights: lambda (1/N) sum_n ||dy_n/dw||^2.

    R = lambda (1/N) sum_n ||d f_w(x_n) / d w||_F^2 over the masked leaves. To second order,
    training with weight noise w + eps, eps ~ N(0, eta I), on the squared error adds
    eta E[||d f_w(x) / d w||^2]: this is that penalty made explicit (flat minima).

    Args:
        fn: ``fn(params, x)`` maps a batch (N, *in) to (N, *out), rows independent.
        params: parameter pytree.
        x: inputs, shape (N, *in).
        coefficient: lambda >= 0.
        mask: which leaves count as weights (see the module docstring); default kernels only.

    Returns:
        A scalar.

    Reference: Goodfellow et al., *Deep Learning*, sec. 7.5 (noise injection on the weights);
    Bishop, *Training with noise is equivalent to Tikhonov regularization*, 1995.
    """
    check_coefficient("coefficient", coefficient)
    x = jnp.asarray(x)
    _check_batch("x", x)
    per_example = jax.jacrev(lambda p, xi: fn(p, xi[None])[0])
    J = jax.vmap(per_example, in_axes=(None, 0))(params, x)
    leaves = _selected_leaves(J, params, mask)
    total = sum((jnp.sum(jnp.square(g)) for g in leaves), start=jnp.zeros(()))
    return coefficient * total / x.shape[0]
