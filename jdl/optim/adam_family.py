"""Adam and its variants: AMSGrad, AdaMax, NAdam and QHAdam.

All keep the moving average m_t of the gradients and a second statistic of their size (v_t,
its running maximum, or the infinity norm u_t); the conventions are in
:mod:`jdl.optim.conventions`.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from jdl.hyperparams import check_interval
from jdl.optim.conventions import cast_back, initial_count, wide, wide_tree, zeros


class AdamState(NamedTuple):
    """State of :func:`scale_by_adam` and :func:`scale_by_qhadam`."""

    count: jax.Array  # shape=(), int32
    mu: optax.Updates  # m_t, first moment, like params
    nu: optax.Updates  # v_t, second moment, like params


def _check_adam(b1: ArrayLike, b2: ArrayLike, eps: ArrayLike) -> None:
    check_interval("b1", b1, 0.0, 1.0)
    check_interval("b2", b2, 0.0, 1.0)
    check_interval("eps", eps, 0.0, low_open=True)


def _init_adam(params: optax.Params) -> AdamState:
    return AdamState(count=initial_count(), mu=zeros(params), nu=zeros(params))


def _first_moment(updates: optax.Updates, mu: optax.Updates, b1: ArrayLike) -> optax.Updates:
    """m_t = b1 m_{t-1} + (1-b1) g_t, widened."""
    return optax.tree.update_moment(wide_tree(updates), wide_tree(mu), b1, 1)


def _moments(
    updates: optax.Updates, mu: optax.Updates, nu: optax.Updates, b1: ArrayLike, b2: ArrayLike
) -> tuple[optax.Updates, optax.Updates]:
    """m_t = b1 m_{t-1} + (1-b1) g_t and v_t = b2 v_{t-1} + (1-b2) g_t^2, widened."""
    mu = _first_moment(updates, mu, b1)
    nu = optax.tree.update_moment(wide_tree(updates), wide_tree(nu), b2, 2)
    return mu, nu


def _bias_corrected(
    mu: optax.Updates, nu: optax.Updates, b1: ArrayLike, b2: ArrayLike, count: jax.Array
) -> tuple[optax.Updates, optax.Updates]:
    """m-hat_t = m_t / (1 - b1^t) and v-hat_t = v_t / (1 - b2^t)."""
    return optax.tree.bias_correction(mu, b1, count), optax.tree.bias_correction(nu, b2, count)


def _adam_direction(m_hat: optax.Updates, v_hat: optax.Updates, eps: ArrayLike) -> optax.Updates:
    """d_t = m-hat_t / (sqrt(v-hat_t) + eps)."""
    return jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + eps), m_hat, v_hat)


def scale_by_adam(
    b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8
) -> optax.GradientTransformation:
    r"""Adam: bias-corrected first moment over the root of the bias-corrected second moment.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,
        \quad \hat m_t = \frac{m_t}{1-\beta_1^t}, \quad \hat v_t = \frac{v_t}{1-\beta_2^t},
        \quad d_t = \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    Args:
      b1: beta_1 in [0, 1).
      b2: beta_2 in [0, 1).
      eps: epsilon > 0, outside the root.

    Returns:
      An ``optax.GradientTransformation`` with :class:`AdamState`.

    References:
      Kingma, Ba, "Adam: a method for stochastic optimization", ICLR 2015. Matches
      ``torch.optim.Adam``.
    """
    _check_adam(b1, b2, eps)

    def update_fn(
        updates: optax.Updates, state: AdamState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AdamState]:
        del params
        count = optax.safe_int32_increment(state.count)
        mu, nu = _moments(updates, state.mu, state.nu, b1, b2)
        direction = _adam_direction(*_bias_corrected(mu, nu, b1, b2, count), eps)
        return cast_back(direction, updates, AdamState(count=count, mu=mu, nu=nu), state)

    return optax.GradientTransformation(_init_adam, update_fn)


class AmsgradState(NamedTuple):
    """State of :func:`scale_by_amsgrad`."""

    count: jax.Array  # shape=(), int32
    mu: optax.Updates  # m_t, like params
    nu: optax.Updates  # v_t, like params
    nu_max: optax.Updates  # max_{s<=t} v_s of the raw (not bias-corrected) v, like params


def scale_by_amsgrad(
    b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8
) -> optax.GradientTransformation:
    r"""AMSGrad: Adam with the running maximum of the second moment.

    .. math::
        \bar v_t = \max(\bar v_{t-1}, v_t), \quad
        d_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{\bar v_t / (1-\beta_2^t)} + \epsilon}

    with m_t, v_t as in :func:`scale_by_adam`. The maximum is over the raw v_t and the bias
    correction is applied afterwards, as in PyTorch; optax 0.2.8 keeps the maximum of the
    bias-corrected v-hat instead, and the paper has neither bias correction nor eps.

    Args:
      b1: beta_1 in [0, 1).
      b2: beta_2 in [0, 1).
      eps: epsilon > 0, outside the root.

    Returns:
      An ``optax.GradientTransformation`` with :class:`AmsgradState`.

    References:
      Reddi, Kale, Kumar, "On the convergence of Adam and beyond", ICLR 2018. Matches
      ``torch.optim.Adam(amsgrad=True)``.
    """
    _check_adam(b1, b2, eps)

    def init_fn(params: optax.Params) -> AmsgradState:
        return AmsgradState(
            count=initial_count(), mu=zeros(params), nu=zeros(params), nu_max=zeros(params)
        )

    def update_fn(
        updates: optax.Updates, state: AmsgradState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AmsgradState]:
        del params
        count = optax.safe_int32_increment(state.count)
        mu, nu = _moments(updates, state.mu, state.nu, b1, b2)
        nu_max = jax.tree.map(lambda vm, v: jnp.maximum(wide(vm), v), state.nu_max, nu)
        direction = _adam_direction(*_bias_corrected(mu, nu_max, b1, b2, count), eps)
        new_state = AmsgradState(count=count, mu=mu, nu=nu, nu_max=nu_max)
        return cast_back(direction, updates, new_state, state)

    return optax.GradientTransformation(init_fn, update_fn)


class AdamaxState(NamedTuple):
    """State of :func:`scale_by_adamax`."""

    count: jax.Array  # shape=(), int32
    mu: optax.Updates  # m_t, like params
    u: optax.Updates  # u_t, exponentially weighted infinity norm, like params


def scale_by_adamax(
    b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8
) -> optax.GradientTransformation:
    r"""AdaMax: Adam with the infinity norm in place of the root mean square.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \quad
        d_t = \frac{m_t}{(1-\beta_1^t)\, u_t}

    eps sits inside the maximum (PyTorch and optax); the paper has none and can divide by 0.

    Args:
      b1: beta_1 in [0, 1).
      b2: beta_2 in [0, 1).
      eps: epsilon > 0.

    Returns:
      An ``optax.GradientTransformation`` with :class:`AdamaxState`.

    References:
      Kingma, Ba, "Adam: a method for stochastic optimization", ICLR 2015, section 7.
      Matches ``torch.optim.Adamax``.
    """
    _check_adam(b1, b2, eps)

    def init_fn(params: optax.Params) -> AdamaxState:
        return AdamaxState(count=initial_count(), mu=zeros(params), u=zeros(params))

    def update_fn(
        updates: optax.Updates, state: AdamaxState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AdamaxState]:
        del params
        count = optax.safe_int32_increment(state.count)
        mu = _first_moment(updates, state.mu, b1)
        u = optax.tree.update_infinity_moment(wide_tree(updates), wide_tree(state.u), b2, eps)
        direction = jax.tree.map(
            lambda m_hat, n: m_hat / n, optax.tree.bias_correction(mu, b1, count), u
        )
        return cast_back(direction, updates, AdamaxState(count=count, mu=mu, u=u), state)

    return optax.GradientTransformation(init_fn, update_fn)


class NadamState(NamedTuple):
    """State of :func:`scale_by_nadam`."""

    count: jax.Array  # shape=(), int32
    mu_product: jax.Array  # shape=(), prod_{s<=t} mu_s, float32 (float64 with x64 enabled)
    mu: optax.Updates  # m_t, like params
    nu: optax.Updates  # v_t, like params


def scale_by_nadam(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    momentum_decay: ArrayLike = 4e-3,
) -> optax.GradientTransformation:
    r"""NAdam: Adam with a Nesterov look-ahead on the first moment and a momentum schedule.

    .. math::
        \mu_t = \beta_1 (1 - \tfrac12 \cdot 0.96^{t \psi}), \quad
        \Pi_t = \prod_{s \le t} \mu_s, \quad
        \hat v_t = \frac{v_t}{1-\beta_2^t},

        d_t = \frac{1-\mu_t}{1-\Pi_t} \frac{g_t}{\sqrt{\hat v_t}+\epsilon}
            + \frac{\mu_{t+1}}{1-\Pi_t \mu_{t+1}} \frac{m_t}{\sqrt{\hat v_t}+\epsilon}

    with psi the ``momentum_decay`` and m_t, v_t the plain moving averages of
    :func:`scale_by_adam`. The schedule (Dozat 2016, after Sutskever et al. 2013) is PyTorch's;
    optax 0.2.8 keeps mu_t = beta_1 (the limit psi -> infinity). At t = 1, mu_1 is about
    beta_1 / 2.

    Args:
      b1: beta_1 in [0, 1).
      b2: beta_2 in [0, 1).
      eps: epsilon > 0, outside the root.
      momentum_decay: psi >= 0.

    Returns:
      An ``optax.GradientTransformation`` with :class:`NadamState`.

    References:
      Dozat, "Incorporating Nesterov momentum into Adam", ICLR workshop 2016. Matches
      ``torch.optim.NAdam``.
    """
    _check_adam(b1, b2, eps)
    check_interval("momentum_decay", momentum_decay, 0.0)

    def init_fn(params: optax.Params) -> NadamState:
        scalar = jax.dtypes.canonicalize_dtype(jnp.float64)
        return NadamState(
            count=initial_count(),
            mu_product=jnp.ones([], scalar),
            mu=zeros(params),
            nu=zeros(params),
        )

    def update_fn(
        updates: optax.Updates, state: NadamState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, NadamState]:
        del params
        count = optax.safe_int32_increment(state.count)
        t = count.astype(state.mu_product.dtype)
        mu_t = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
        mu_product = state.mu_product * mu_t
        mu, nu = _moments(updates, state.mu, state.nu, b1, b2)

        def leaf_direction(g: jax.Array, m: jax.Array, v_hat: jax.Array) -> jax.Array:
            denom = jnp.sqrt(v_hat) + eps
            return ((1 - mu_t) / (1 - mu_product)) * wide(g) / denom + (
                mu_next / (1 - mu_product * mu_next)
            ) * m / denom

        nu_hat = optax.tree.bias_correction(nu, b2, count)
        direction = jax.tree.map(leaf_direction, updates, mu, nu_hat)
        new_state = NadamState(count=count, mu_product=mu_product, mu=mu, nu=nu)
        return cast_back(direction, updates, new_state, state)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_qhadam(
    b1: ArrayLike = 0.995,
    b2: ArrayLike = 0.999,
    nu1: ArrayLike = 0.7,
    nu2: ArrayLike = 1.0,
    eps: ArrayLike = 1e-8,
) -> optax.GradientTransformation:
    r"""Quasi-hyperbolic Adam: QHM's averaging applied to both of Adam's moments.

    .. math::
        d_t = \frac{(1-\nu_1) g_t + \nu_1 \hat m_t}{\sqrt{(1-\nu_2) g_t^2 + \nu_2 \hat v_t}
              + \epsilon}

    with the bias-corrected moments m-hat, v-hat of :func:`scale_by_adam`. nu1 = nu2 = 1 is
    Adam.

    Args:
      b1: beta_1 in [0, 1).
      b2: beta_2 in [0, 1).
      nu1: nu_1 in [0, 1].
      nu2: nu_2 in [0, 1].
      eps: epsilon > 0, outside the root.

    Returns:
      An ``optax.GradientTransformation`` with :class:`AdamState`.

    References:
      Ma, Yarats, "Quasi-hyperbolic momentum and Adam for deep learning", ICLR 2019. Matches
      ``torch_optimizer.QHAdam``.
    """
    _check_adam(b1, b2, eps)
    check_interval("nu1", nu1, 0.0, 1.0, high_open=False)
    check_interval("nu2", nu2, 0.0, 1.0, high_open=False)

    def update_fn(
        updates: optax.Updates, state: AdamState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AdamState]:
        del params
        count = optax.safe_int32_increment(state.count)
        mu, nu = _moments(updates, state.mu, state.nu, b1, b2)

        def leaf_direction(g: jax.Array, m_hat: jax.Array, v_hat: jax.Array) -> jax.Array:
            g = wide(g)
            numerator = (1 - nu1) * g + nu1 * m_hat
            mean_square = (1 - nu2) * g**2 + nu2 * v_hat
            return numerator / (jnp.sqrt(mean_square) + eps)

        m_hat, v_hat = _bias_corrected(mu, nu, b1, b2, count)
        direction = jax.tree.map(leaf_direction, updates, m_hat, v_hat)
        return cast_back(direction, updates, AdamState(count=count, mu=mu, nu=nu), state)

    return optax.GradientTransformation(_init_adam, update_fn)
