"""Learning-rate schedules: functions ``count -> learning rate`` usable wherever optax takes one."""

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from jdl.hyperparams import check_interval


def time_constant_decay(init_value: ArrayLike, tau: ArrayLike) -> optax.Schedule:
    r"""Constant for tau + 1 updates (t = 0, ..., tau), then decaying as 1/t.

    .. math::
        \eta_t = \eta_0 \frac{\tau}{\max(t, \tau)}

    with t the number of updates already done (0 for the first one, as optax counts), so
    eta_0 holds for tau + 1 updates (t = 0, ..., tau), the next one uses eta_0 tau / (tau + 1),
    and the rate halves at t = 2 tau. The 1/t tail satisfies the
    Robbins-Monro conditions (sum eta_t = inf, sum eta_t^2 < inf).

    Args:
      init_value: eta_0 >= 0.
      tau: the time constant tau >= 1, in updates.

    Returns:
      A schedule ``count -> eta_count``.

    Example:
      >>> import jdl.optim
      >>> schedule = jdl.optim.time_constant_decay(0.1, tau=100)
      >>> tx = jdl.optim.sgd(schedule)

    References:
      Bengio, "Practical recommendations for gradient-based training of deep architectures",
      2012, section 3.1.1. Equals ``torch.optim.lr_scheduler.LambdaLR`` with
      ``lambda t: tau / max(t, tau)``.
    """
    check_interval("init_value", init_value, 0.0)
    check_interval("tau", tau, 1.0)

    def schedule(count: ArrayLike) -> jax.Array:
        return init_value * tau / jnp.maximum(count, tau)

    return schedule
