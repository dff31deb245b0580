"""Momentum blocks: heavy ball and Nesterov, quasi-hyperbolic momentum (QHM), aggregated momentum.

Each keeps exponentially weighted sums of past gradients and returns a direction without a
learning rate; the conventions are in :mod:`jdl.optim.conventions`.
"""

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from jdl.hyperparams import check_interval
from jdl.optim.conventions import cast_back, initial_count, wide, wide_tree, zeros


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
        return MomentumState(count=initial_count(), trace=zeros(params))

    def update_fn(
        updates: optax.Updates, state: MomentumState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, MomentumState]:
        del params
        trace = jax.tree.map(lambda g, b: momentum * wide(b) + wide(g), updates, state.trace)
        if nesterov:
            direction = jax.tree.map(lambda g, b: wide(g) + momentum * b, updates, trace)
        else:
            direction = trace
        new_state = MomentumState(count=optax.safe_int32_increment(state.count), trace=trace)
        return cast_back(direction, updates, new_state, state)

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
        return QHMState(count=initial_count(), trace=zeros(params))

    def update_fn(
        updates: optax.Updates, state: QHMState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, QHMState]:
        del params
        trace = optax.tree.update_moment(wide_tree(updates), wide_tree(state.trace), momentum, 1)
        direction = jax.tree.map(lambda g, b: (1 - nu) * wide(g) + nu * b, updates, trace)
        new_state = QHMState(count=optax.safe_int32_increment(state.count), trace=trace)
        return cast_back(direction, updates, new_state, state)

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
            count=initial_count(),
            traces=jax.tree.map(lambda p: jnp.zeros((k, *jnp.shape(p)), p.dtype), params),
        )

    def update_fn(
        updates: optax.Updates, state: AggMoState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AggMoState]:
        del params

        def step(g: jax.Array, b: jax.Array) -> jax.Array:
            return jnp.stack([beta * wide(b[i]) + wide(g) for i, beta in enumerate(beta_list)])

        traces = jax.tree.map(step, updates, state.traces)
        direction = jax.tree.map(lambda b: jnp.mean(b, axis=0), traces)
        new_state = AggMoState(count=optax.safe_int32_increment(state.count), traces=traces)
        return cast_back(direction, updates, new_state, state)

    return optax.GradientTransformation(init_fn, update_fn)
