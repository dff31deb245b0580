"""Adagrad and its extension Adadelta: per-coordinate steps from accumulated squared gradients.

Neither uses a first moment or bias correction; the conventions are in
:mod:`jdl.optim.conventions`.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from jdl.hyperparams import check_interval
from jdl.optim.conventions import cast_back, initial_count, wide, zeros


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
            count=initial_count(),
            sum_of_squares=jax.tree.map(
                lambda p: jnp.full_like(p, initial_accumulator_value), params
            ),
        )

    def update_fn(
        updates: optax.Updates, state: AdagradState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AdagradState]:
        del params
        sums = jax.tree.map(lambda g, s: wide(s) + wide(g) ** 2, updates, state.sum_of_squares)
        direction = jax.tree.map(lambda g, s: wide(g) / (jnp.sqrt(s) + eps), updates, sums)
        new_state = AdagradState(count=optax.safe_int32_increment(state.count), sum_of_squares=sums)
        return cast_back(direction, updates, new_state, state)

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
        return AdadeltaState(count=initial_count(), e_g2=zeros(params), e_dx2=zeros(params))

    def update_fn(
        updates: optax.Updates, state: AdadeltaState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AdadeltaState]:
        del params
        e_g2 = jax.tree.map(
            lambda g, e: rho * wide(e) + (1 - rho) * wide(g) ** 2, updates, state.e_g2
        )
        direction = jax.tree.map(
            lambda g, eg, ex: jnp.sqrt(wide(ex) + eps) / jnp.sqrt(eg + eps) * wide(g),
            updates,
            e_g2,
            state.e_dx2,
        )
        e_dx2 = jax.tree.map(lambda d, e: rho * wide(e) + (1 - rho) * d**2, direction, state.e_dx2)
        new_state = AdadeltaState(
            count=optax.safe_int32_increment(state.count), e_g2=e_g2, e_dx2=e_dx2
        )
        return cast_back(direction, updates, new_state, state)

    return optax.GradientTransformation(init_fn, update_fn)
