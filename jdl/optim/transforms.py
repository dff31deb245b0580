"""Building blocks: gradient transformations without a learning rate.

Each ``scale_by_*`` maps the gradient g_t to a direction d_t; the aliases in
:mod:`jdl.optim.aliases` chain it with ``optax.scale_by_learning_rate`` so the parameter update is
``theta_t = theta_{t-1} - eta_t * d_t``. The sign flip lives only there.

Conventions shared by every block:

* State is a NamedTuple with ``count`` (int32 scalar, the number of updates done) first; every
  other per-parameter buffer has the parameter's shape and dtype.
* Arithmetic happens in at least float32 and the result is cast back to the parameter's dtype:
  in bfloat16 a decay such as b2 = 0.999 would round to exactly 1 (optax issue #1414). Stored
  in bfloat16, a moving average still only resolves relative changes above about 2**-8; keep
  float32 parameters where that matters.
* Hyper-parameters may be Python floats or JAX arrays (traced under ``vmap``). Concrete values
  are checked at construction (:mod:`jdl.optim.validation`); traced ones are used as they are.

Where optax 0.2.8 differs from the PyTorch reference (Adagrad's eps and initial value, AMSGrad's
maximum, NAdam's momentum schedule) or lacks the method (QHM, QHAdam, AggMo), the block follows
the reference given in its docstring.
"""

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from jdl.optim.validation import check_interval


def _wide(x: jax.Array) -> jax.Array:
    """``x`` in at least float32, so that decays close to 1 survive bfloat16 parameters."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _wide_tree(tree: optax.Updates) -> optax.Updates:
    return jax.tree.map(_wide, tree)


def _zeros(params: optax.Params) -> optax.Params:
    return jax.tree.map(jnp.zeros_like, params)


def _count() -> jax.Array:
    return jnp.zeros([], jnp.int32)


class MomentumState(NamedTuple):
    """State of :func:`scale_by_momentum`."""

    count: jax.Array  # shape=(), int32
    trace: optax.Updates  # v_t, like params


def scale_by_momentum(
    momentum: ArrayLike = 0.9, *, nesterov: bool = False
) -> optax.GradientTransformation:
    r"""Heavy-ball momentum (Polyak 1964) or its Nesterov form (Sutskever et al. 2013).

    .. math::
        b_t = \gamma b_{t-1} + g_t, \quad b_0 = 0; \qquad
        d_t = b_t \ \text{(heavy ball)}, \quad d_t = g_t + \gamma b_t \ \text{(Nesterov)}

    With a constant learning rate eta this is the course's v_t = gamma v_{t-1} + eta g_t,
    theta_t = theta_{t-1} - v_t (v = eta b). The Nesterov form evaluates one gradient per step
    at the stored parameters; these are the course's look-ahead point theta - gamma v, so the
    reformulated update reproduces "the gradient at theta - gamma v" exactly (for a constant
    learning rate; tests/optim/test_nesterov.py checks it). Under a schedule the past
    gradients are rescaled by the current learning rate, as PyTorch and optax do.

    Args:
      momentum: gamma in [0, 1).
      nesterov: use the Nesterov direction.

    Returns:
      An ``optax.GradientTransformation`` with :class:`MomentumState`.

    References:
      Polyak, 1964; Sutskever et al., "On the importance of initialization and momentum in deep
      learning", ICML 2013. Matches ``torch.optim.SGD(momentum=..., nesterov=...)``.
    """
    check_interval("momentum", momentum, 0.0, 1.0)

    def init_fn(params: optax.Params) -> MomentumState:
        return MomentumState(count=_count(), trace=_zeros(params))

    def update_fn(
        updates: optax.Updates, state: MomentumState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, MomentumState]:
        del params
        trace = jax.tree.map(lambda g, b: momentum * _wide(b) + _wide(g), updates, state.trace)
        if nesterov:
            direction = jax.tree.map(lambda g, b: _wide(g) + momentum * b, updates, trace)
        else:
            direction = trace
        return optax.tree.cast_like(direction, updates), MomentumState(
            count=optax.safe_int32_increment(state.count),
            trace=optax.tree.cast_like(trace, state.trace),
        )

    return optax.GradientTransformation(init_fn, update_fn)


class AdagradState(NamedTuple):
    """State of :func:`scale_by_adagrad`."""

    count: jax.Array  # shape=(), int32
    sum_of_squares: optax.Updates  # G_t, like params


def scale_by_adagrad(
    eps: ArrayLike = 1e-10, initial_accumulator_value: ArrayLike = 0.0
) -> optax.GradientTransformation:
    r"""Adagrad: divide by the root of the sum of all past squared gradients.

    .. math::
        G_t = G_{t-1} + g_t^2, \quad G_0 = \text{initial\_accumulator\_value}; \qquad
        d_t = g_t / (\sqrt{G_t} + \epsilon)

    As in the paper (delta outside the root) and PyTorch; optax 0.2.8 puts eps inside the root
    and starts G at 0.1.

    Args:
      eps: epsilon > 0, added to the root.
      initial_accumulator_value: G_0 >= 0.

    Returns:
      An ``optax.GradientTransformation`` with :class:`AdagradState`.

    References:
      Duchi, Hazan, Singer, "Adaptive subgradient methods for online learning and stochastic
      optimization", JMLR 2011. Matches ``torch.optim.Adagrad``.
    """
    check_interval("eps", eps, 0.0, low_open=True)
    check_interval("initial_accumulator_value", initial_accumulator_value, 0.0)

    def init_fn(params: optax.Params) -> AdagradState:
        return AdagradState(
            count=_count(),
            sum_of_squares=jax.tree.map(
                lambda p: jnp.full_like(p, initial_accumulator_value), params
            ),
        )

    def update_fn(
        updates: optax.Updates, state: AdagradState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AdagradState]:
        del params
        sums = jax.tree.map(lambda g, s: _wide(s) + _wide(g) ** 2, updates, state.sum_of_squares)
        direction = jax.tree.map(lambda g, s: _wide(g) / (jnp.sqrt(s) + eps), updates, sums)
        return optax.tree.cast_like(direction, updates), AdagradState(
            count=optax.safe_int32_increment(state.count),
            sum_of_squares=optax.tree.cast_like(sums, state.sum_of_squares),
        )

    return optax.GradientTransformation(init_fn, update_fn)


class AdadeltaState(NamedTuple):
    """State of :func:`scale_by_adadelta`."""

    count: jax.Array  # shape=(), int32
    e_g2: optax.Updates  # E[g^2]_t, like params
    e_dx2: optax.Updates  # E[dx^2]_t, like params


def scale_by_adadelta(rho: ArrayLike = 0.9, eps: ArrayLike = 1e-6) -> optax.GradientTransformation:
    r"""Adadelta: the ratio of running RMS of past steps and of gradients.

    .. math::
        E[g^2]_t = \rho E[g^2]_{t-1} + (1-\rho) g_t^2; \quad
        d_t = \frac{\sqrt{E[\Delta x^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}} g_t; \quad
        E[\Delta x^2]_t = \rho E[\Delta x^2]_{t-1} + (1-\rho) d_t^2

    E[dx^2] accumulates the direction before any learning-rate scaling, as PyTorch does; the
    paper has no learning rate (the alias's default 1.0) and uses rho = 0.95.

    Args:
      rho: decay rate in [0, 1].
      eps: epsilon > 0, inside both roots.

    Returns:
      An ``optax.GradientTransformation`` with :class:`AdadeltaState`.

    References:
      Zeiler, "ADADELTA: an adaptive learning rate method", arXiv:1212.5701, 2012. Matches
      ``torch.optim.Adadelta``.
    """
    check_interval("rho", rho, 0.0, 1.0, high_open=False)
    check_interval("eps", eps, 0.0, low_open=True)

    def init_fn(params: optax.Params) -> AdadeltaState:
        return AdadeltaState(count=_count(), e_g2=_zeros(params), e_dx2=_zeros(params))

    def update_fn(
        updates: optax.Updates, state: AdadeltaState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AdadeltaState]:
        del params
        e_g2 = jax.tree.map(
            lambda g, e: rho * _wide(e) + (1 - rho) * _wide(g) ** 2, updates, state.e_g2
        )
        direction = jax.tree.map(
            lambda g, eg, ex: jnp.sqrt(_wide(ex) + eps) / jnp.sqrt(eg + eps) * _wide(g),
            updates,
            e_g2,
            state.e_dx2,
        )
        e_dx2 = jax.tree.map(lambda d, e: rho * _wide(e) + (1 - rho) * d**2, direction, state.e_dx2)
        return optax.tree.cast_like(direction, updates), AdadeltaState(
            count=optax.safe_int32_increment(state.count),
            e_g2=optax.tree.cast_like(e_g2, state.e_g2),
            e_dx2=optax.tree.cast_like(e_dx2, state.e_dx2),
        )

    return optax.GradientTransformation(init_fn, update_fn)


class AdamState(NamedTuple):
    """State of :func:`scale_by_adam` and :func:`scale_by_qhadam`."""

    count: jax.Array  # shape=(), int32
    mu: optax.Updates  # m_t, first moment, like params
    nu: optax.Updates  # v_t, second moment, like params


def _check_adam(b1: ArrayLike, b2: ArrayLike, eps: ArrayLike) -> None:
    check_interval("b1", b1, 0.0, 1.0)
    check_interval("b2", b2, 0.0, 1.0)
    check_interval("eps", eps, 0.0, low_open=True)


def _moments(
    updates: optax.Updates, state: AdamState, b1: ArrayLike, b2: ArrayLike
) -> tuple[optax.Updates, optax.Updates]:
    """m_t = b1 m_{t-1} + (1-b1) g_t and v_t = b2 v_{t-1} + (1-b2) g_t^2, widened."""
    mu = optax.tree.update_moment(_wide_tree(updates), _wide_tree(state.mu), b1, 1)
    nu = optax.tree.update_moment(_wide_tree(updates), _wide_tree(state.nu), b2, 2)
    return mu, nu


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

    def init_fn(params: optax.Params) -> AdamState:
        return AdamState(count=_count(), mu=_zeros(params), nu=_zeros(params))

    def update_fn(
        updates: optax.Updates, state: AdamState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AdamState]:
        del params
        count = optax.safe_int32_increment(state.count)
        mu, nu = _moments(updates, state, b1, b2)
        direction = jax.tree.map(
            lambda m_hat, v_hat: m_hat / (jnp.sqrt(v_hat) + eps),
            optax.tree.bias_correction(mu, b1, count),
            optax.tree.bias_correction(nu, b2, count),
        )
        return optax.tree.cast_like(direction, updates), AdamState(
            count=count,
            mu=optax.tree.cast_like(mu, state.mu),
            nu=optax.tree.cast_like(nu, state.nu),
        )

    return optax.GradientTransformation(init_fn, update_fn)


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
            count=_count(), mu=_zeros(params), nu=_zeros(params), nu_max=_zeros(params)
        )

    def update_fn(
        updates: optax.Updates, state: AmsgradState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AmsgradState]:
        del params
        count = optax.safe_int32_increment(state.count)
        mu, nu = _moments(updates, state, b1, b2)
        nu_max = jax.tree.map(lambda vm, v: jnp.maximum(_wide(vm), v), state.nu_max, nu)
        direction = jax.tree.map(
            lambda m_hat, vm_hat: m_hat / (jnp.sqrt(vm_hat) + eps),
            optax.tree.bias_correction(mu, b1, count),
            optax.tree.bias_correction(nu_max, b2, count),
        )
        return optax.tree.cast_like(direction, updates), AmsgradState(
            count=count,
            mu=optax.tree.cast_like(mu, state.mu),
            nu=optax.tree.cast_like(nu, state.nu),
            nu_max=optax.tree.cast_like(nu_max, state.nu_max),
        )

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
        return AdamaxState(count=_count(), mu=_zeros(params), u=_zeros(params))

    def update_fn(
        updates: optax.Updates, state: AdamaxState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AdamaxState]:
        del params
        count = optax.safe_int32_increment(state.count)
        mu = optax.tree.update_moment(_wide_tree(updates), _wide_tree(state.mu), b1, 1)
        u = optax.tree.update_infinity_moment(_wide_tree(updates), _wide_tree(state.u), b2, eps)
        direction = jax.tree.map(
            lambda m_hat, n: m_hat / n, optax.tree.bias_correction(mu, b1, count), u
        )
        return optax.tree.cast_like(direction, updates), AdamaxState(
            count=count,
            mu=optax.tree.cast_like(mu, state.mu),
            u=optax.tree.cast_like(u, state.u),
        )

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
            count=_count(),
            mu_product=jnp.ones([], scalar),
            mu=_zeros(params),
            nu=_zeros(params),
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
        mu, nu = _moments(updates, state, b1, b2)

        def direction(g: jax.Array, m: jax.Array, v_hat: jax.Array) -> jax.Array:
            denom = jnp.sqrt(v_hat) + eps
            return ((1 - mu_t) / (1 - mu_product)) * _wide(g) / denom + (
                mu_next / (1 - mu_product * mu_next)
            ) * m / denom

        nu_hat = optax.tree.bias_correction(nu, b2, count)

        return optax.tree.cast_like(
            jax.tree.map(direction, updates, mu, nu_hat), updates
        ), NadamState(
            count=count,
            mu_product=mu_product.astype(state.mu_product.dtype),
            mu=optax.tree.cast_like(mu, state.mu),
            nu=optax.tree.cast_like(nu, state.nu),
        )

    return optax.GradientTransformation(init_fn, update_fn)


class QHMState(NamedTuple):
    """State of :func:`scale_by_qhm`."""

    count: jax.Array  # shape=(), int32
    trace: optax.Updates  # b_t, exponential moving average of gradients, like params


def scale_by_qhm(momentum: ArrayLike = 0.999, nu: ArrayLike = 0.7) -> optax.GradientTransformation:
    r"""Quasi-hyperbolic momentum: a weighted average of the gradient and its EMA.

    .. math::
        b_t = \beta b_{t-1} + (1-\beta) g_t, \quad b_0 = 0; \qquad
        d_t = (1-\nu) g_t + \nu b_t

    No bias correction, as in the authors' code. nu = 0 is SGD, nu = 1 is EMA momentum, and
    (beta, nu) = (gamma, gamma) is Nesterov's momentum up to the scale of the learning rate.

    Args:
      momentum: beta in [0, 1).
      nu: nu in [0, 1].

    Returns:
      An ``optax.GradientTransformation`` with :class:`QHMState`.

    References:
      Ma, Yarats, "Quasi-hyperbolic momentum and Adam for deep learning", ICLR 2019. Matches
      ``torch_optimizer.QHM``.
    """
    check_interval("momentum", momentum, 0.0, 1.0)
    check_interval("nu", nu, 0.0, 1.0, high_open=False)

    def init_fn(params: optax.Params) -> QHMState:
        return QHMState(count=_count(), trace=_zeros(params))

    def update_fn(
        updates: optax.Updates, state: QHMState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, QHMState]:
        del params
        trace = optax.tree.update_moment(_wide_tree(updates), _wide_tree(state.trace), momentum, 1)
        direction = jax.tree.map(lambda g, b: (1 - nu) * _wide(g) + nu * b, updates, trace)
        return optax.tree.cast_like(direction, updates), QHMState(
            count=optax.safe_int32_increment(state.count),
            trace=optax.tree.cast_like(trace, state.trace),
        )

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

    def init_fn(params: optax.Params) -> AdamState:
        return AdamState(count=_count(), mu=_zeros(params), nu=_zeros(params))

    def update_fn(
        updates: optax.Updates, state: AdamState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AdamState]:
        del params
        count = optax.safe_int32_increment(state.count)
        mu, nu = _moments(updates, state, b1, b2)

        def direction(g: jax.Array, m_hat: jax.Array, v_hat: jax.Array) -> jax.Array:
            g = _wide(g)
            numerator = (1 - nu1) * g + nu1 * m_hat
            mean_square = (1 - nu2) * g**2 + nu2 * v_hat
            return numerator / (jnp.sqrt(mean_square) + eps)

        m_hat = optax.tree.bias_correction(mu, b1, count)
        v_hat = optax.tree.bias_correction(nu, b2, count)
        return optax.tree.cast_like(
            jax.tree.map(direction, updates, m_hat, v_hat), updates
        ), AdamState(
            count=count,
            mu=optax.tree.cast_like(mu, state.mu),
            nu=optax.tree.cast_like(nu, state.nu),
        )

    return optax.GradientTransformation(init_fn, update_fn)


class AggMoState(NamedTuple):
    """State of :func:`scale_by_aggmo`."""

    count: jax.Array  # shape=(), int32
    traces: optax.Updates  # b_t^(i) stacked on a leading axis: shape (K, *param.shape)


def _beta_list(betas: Sequence[ArrayLike] | jax.Array) -> list[ArrayLike]:
    """Validate AggMo's betas; return them as a list of K scalars (K static)."""
    if hasattr(betas, "ndim"):  # a NumPy or JAX array, possibly traced
        if jnp.ndim(betas) != 1 or jnp.shape(betas)[0] == 0:
            raise ValueError(
                f"betas must be a non-empty 1-D sequence, got shape {jnp.shape(betas)}"
            )
        check_interval("betas", betas, 0.0, 1.0)
        return [betas[i] for i in range(jnp.shape(betas)[0])]
    if isinstance(betas, str) or not isinstance(betas, Sequence):
        raise TypeError(f"betas must be a sequence of numbers or a 1-D array, got {betas!r}")
    if len(betas) == 0:
        raise ValueError("betas must be a non-empty sequence with each beta in [0, 1), got ()")
    for i, beta in enumerate(betas):
        check_interval(f"betas[{i}]", beta, 0.0, 1.0)
    return list(betas)


def scale_by_aggmo(
    betas: Sequence[ArrayLike] | jax.Array = (0.0, 0.9, 0.99),
) -> optax.GradientTransformation:
    r"""Aggregated momentum: the average of K heavy-ball buffers with different damping.

    .. math::
        b_t^{(i)} = \beta_i b_{t-1}^{(i)} + g_t, \quad b_0^{(i)} = 0; \qquad
        d_t = \frac1K \sum_{i=1}^K b_t^{(i)}

    Each beta has its own buffer, also when two betas are equal; torch_optimizer 0.3.0 keys
    buffers by the beta's value, so duplicates share (and double-update) one buffer.

    Args:
      betas: a non-empty sequence (or 1-D array) of damping factors, each in [0, 1).

    Returns:
      An ``optax.GradientTransformation`` with :class:`AggMoState`.

    References:
      Lucas, Sun, Zemel, Grosse, "Aggregated momentum: stability through passive damping",
      ICLR 2019. Matches ``torch_optimizer.AggMo`` when the betas are distinct.
    """
    beta_list = _beta_list(betas)
    k = len(beta_list)

    def init_fn(params: optax.Params) -> AggMoState:
        return AggMoState(
            count=_count(),
            traces=jax.tree.map(lambda p: jnp.zeros((k, *jnp.shape(p)), p.dtype), params),
        )

    def update_fn(
        updates: optax.Updates, state: AggMoState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AggMoState]:
        del params

        def step(g: jax.Array, b: jax.Array) -> jax.Array:
            return jnp.stack([beta * _wide(b[i]) + _wide(g) for i, beta in enumerate(beta_list)])

        traces = jax.tree.map(step, updates, state.traces)
        direction = jax.tree.map(lambda b: jnp.mean(b, axis=0), traces)
        return optax.tree.cast_like(direction, updates), AggMoState(
            count=optax.safe_int32_increment(state.count),
            traces=optax.tree.cast_like(traces, state.traces),
        )

    return optax.GradientTransformation(init_fn, update_fn)
