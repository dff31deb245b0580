"""The course's optimizers: a building block chained with the (negative) learning rate.

Every alias returns an ``optax.GradientTransformation`` whose ``update`` gives the updates to add
with ``optax.apply_updates`` (already negated), so it composes with ``optax.chain``,
``optax.clip_by_global_norm`` and optax schedules. Each numeric argument may be a Python float or
a JAX array (traced under ``vmap``); ``learning_rate`` may also be a schedule ``count -> value``.
Concrete values are validated here, traced ones are not.

Example:
  >>> import jax.numpy as jnp, optax, jdl.optim
  >>> params = {"w": jnp.ones(3)}
  >>> tx = jdl.optim.adam(1e-3)
  >>> state = tx.init(params)
  >>> grads = {"w": jnp.ones(3)}
  >>> updates, state = tx.update(grads, state, params)
  >>> params = optax.apply_updates(params, updates)
"""

from collections.abc import Callable, Sequence
from typing import Any, ParamSpec

import jax
import optax
from jax.typing import ArrayLike

from jdl.hyperparams import check_interval, check_learning_rate
from jdl.optim.adagrad_family import scale_by_adadelta, scale_by_adagrad
from jdl.optim.adam_family import (
    scale_by_adam,
    scale_by_adamax,
    scale_by_amsgrad,
    scale_by_nadam,
    scale_by_qhadam,
)
from jdl.optim.momentum_family import scale_by_aggmo, scale_by_momentum, scale_by_qhm

LearningRate = ArrayLike | optax.Schedule
P = ParamSpec("P")


def _with_learning_rate(
    learning_rate: LearningRate,
    block: Callable[P, optax.GradientTransformation],
    *args: P.args,
    **kwargs: P.kwargs,
) -> optax.GradientTransformation:
    """theta_t = theta_{t-1} - eta_t d_t, d_t the direction of ``block(*args, **kwargs)``.

    The learning rate is checked before the block (and so its hyper-parameters) is built.
    """
    check_learning_rate(learning_rate)
    return optax.chain(block(*args, **kwargs), optax.scale_by_learning_rate(learning_rate))


def sgd(learning_rate: LearningRate) -> optax.GradientTransformation:
    r"""Stochastic gradient descent: :math:`\theta_t = \theta_{t-1} - \eta g_t`.

    Args:
      learning_rate: eta >= 0, or a schedule.

    References:
      Robbins, Monro, "A stochastic approximation method", 1951. Matches ``torch.optim.SGD``.
    """
    check_learning_rate(learning_rate)
    return optax.scale_by_learning_rate(learning_rate)


def momentum(
    learning_rate: LearningRate, momentum: ArrayLike = 0.9
) -> optax.GradientTransformation:
    r"""SGD with heavy-ball momentum: :math:`v_t = \gamma v_{t-1} + \eta g_t`,
    :math:`\theta_t = \theta_{t-1} - v_t` (see :func:`jdl.optim.scale_by_momentum`).

    Args:
      learning_rate: eta >= 0, or a schedule.
      momentum: gamma in [0, 1).

    References:
      Polyak, 1964. Matches ``torch.optim.SGD(momentum=...)``.
    """
    return _with_learning_rate(learning_rate, scale_by_momentum, momentum)


def nesterov(
    learning_rate: LearningRate, momentum: ArrayLike = 0.9
) -> optax.GradientTransformation:
    r"""Nesterov's accelerated gradient in Sutskever's one-gradient form.

    The course's look-ahead form evaluates the gradient at theta - gamma v:
    :math:`v_t = \gamma v_{t-1} + \eta \nabla f(\theta_{t-1} - \gamma v_{t-1})`,
    :math:`\theta_t = \theta_{t-1} - v_t`. Storing the look-ahead point
    :math:`\phi = \theta - \gamma v` instead gives
    :math:`\phi_t = \phi_{t-1} - \eta (g_t + \gamma b_t)` with :math:`b_t = \gamma b_{t-1} + g_t`
    and :math:`g_t = \nabla f(\phi_{t-1})`: the same trajectory with one gradient per step at the
    stored parameters (exact for a constant learning rate; tested on a quadratic).

    Args:
      learning_rate: eta >= 0, or a schedule.
      momentum: gamma in [0, 1).

    References:
      Nesterov, 1983; Sutskever et al., ICML 2013. Matches
      ``torch.optim.SGD(momentum=..., nesterov=True)``.
    """
    return _with_learning_rate(learning_rate, scale_by_momentum, momentum, nesterov=True)


def adagrad(
    learning_rate: LearningRate, eps: ArrayLike = 1e-10, initial_accumulator_value: ArrayLike = 0.0
) -> optax.GradientTransformation:
    r"""Adagrad: :math:`G_t = G_{t-1} + g_t^2`,
    :math:`\theta_t = \theta_{t-1} - \eta g_t / (\sqrt{G_t} + \epsilon)`
    (see :func:`jdl.optim.scale_by_adagrad`).

    Args:
      learning_rate: eta >= 0, or a schedule.
      eps: epsilon > 0, outside the root.
      initial_accumulator_value: G_0 >= 0.

    References:
      Duchi, Hazan, Singer, JMLR 2011. Matches ``torch.optim.Adagrad``.
    """
    return _with_learning_rate(learning_rate, scale_by_adagrad, eps, initial_accumulator_value)


def adadelta(
    learning_rate: LearningRate = 1.0, rho: ArrayLike = 0.9, eps: ArrayLike = 1e-6
) -> optax.GradientTransformation:
    r"""Adadelta: :math:`\theta_t = \theta_{t-1} - \eta \frac{\mathrm{RMS}[\Delta x]_{t-1}}
    {\mathrm{RMS}[g]_t} g_t` (see :func:`jdl.optim.scale_by_adadelta`).

    The learning rate multiplies the step (1.0, the paper's method, by default). optax 0.2.8's
    ``adadelta()`` with its default ``learning_rate=None`` ascends the gradient.

    Args:
      learning_rate: eta >= 0, or a schedule.
      rho: decay rate in [0, 1].
      eps: epsilon > 0.

    References:
      Zeiler, arXiv:1212.5701, 2012. Matches ``torch.optim.Adadelta``.
    """
    return _with_learning_rate(learning_rate, scale_by_adadelta, rho, eps)


def adam(
    learning_rate: LearningRate, b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8
) -> optax.GradientTransformation:
    r"""Adam: :math:`\theta_t = \theta_{t-1} - \eta \hat m_t / (\sqrt{\hat v_t} + \epsilon)`
    (see :func:`jdl.optim.scale_by_adam`).

    Args:
      learning_rate: eta >= 0, or a schedule.
      b1: beta_1 in [0, 1).
      b2: beta_2 in [0, 1).
      eps: epsilon > 0.

    References:
      Kingma, Ba, ICLR 2015. Matches ``torch.optim.Adam``.
    """
    return _with_learning_rate(learning_rate, scale_by_adam, b1, b2, eps)


def adamax(
    learning_rate: LearningRate, b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8
) -> optax.GradientTransformation:
    r"""AdaMax: :math:`u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)`,
    :math:`\theta_t = \theta_{t-1} - \eta m_t / ((1-\beta_1^t) u_t)`
    (see :func:`jdl.optim.scale_by_adamax`).

    Args:
      learning_rate: eta >= 0, or a schedule.
      b1: beta_1 in [0, 1).
      b2: beta_2 in [0, 1).
      eps: epsilon > 0.

    References:
      Kingma, Ba, ICLR 2015, section 7. Matches ``torch.optim.Adamax``.
    """
    return _with_learning_rate(learning_rate, scale_by_adamax, b1, b2, eps)


def nadam(
    learning_rate: LearningRate,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    momentum_decay: ArrayLike = 4e-3,
) -> optax.GradientTransformation:
    r"""NAdam with PyTorch's momentum schedule
    :math:`\mu_t = \beta_1 (1 - \frac12 0.96^{t \psi})` (see :func:`jdl.optim.scale_by_nadam`).

    Args:
      learning_rate: eta >= 0, or a schedule.
      b1: beta_1 in [0, 1).
      b2: beta_2 in [0, 1).
      eps: epsilon > 0.
      momentum_decay: psi >= 0.

    References:
      Dozat, ICLR workshop 2016. Matches ``torch.optim.NAdam``.
    """
    return _with_learning_rate(learning_rate, scale_by_nadam, b1, b2, eps, momentum_decay)


def amsgrad(
    learning_rate: LearningRate, b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8
) -> optax.GradientTransformation:
    r"""AMSGrad: Adam with :math:`\bar v_t = \max(\bar v_{t-1}, v_t)` over the raw v
    (see :func:`jdl.optim.scale_by_amsgrad`).

    Args:
      learning_rate: eta >= 0, or a schedule.
      b1: beta_1 in [0, 1).
      b2: beta_2 in [0, 1).
      eps: epsilon > 0.

    References:
      Reddi, Kale, Kumar, ICLR 2018. Matches ``torch.optim.Adam(amsgrad=True)``.
    """
    return _with_learning_rate(learning_rate, scale_by_amsgrad, b1, b2, eps)


def adamw(
    learning_rate: LearningRate,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    weight_decay: ArrayLike = 1e-2,
    mask: Any | Callable[[optax.Params], Any] | None = None,
) -> optax.GradientTransformation:
    r"""AdamW: Adam with decoupled weight decay,
    :math:`\theta_t = \theta_{t-1} - \eta (\hat m_t / (\sqrt{\hat v_t} + \epsilon)
    + \lambda \theta_{t-1})`.

    The decay is multiplied by the learning rate (PyTorch's convention, so a schedule scales
    both); the paper decouples it from eta with a separate schedule multiplier. The default
    lambda = 1e-2 is PyTorch's (optax uses 1e-4). ``update`` needs ``params``.

    Args:
      learning_rate: eta >= 0, or a schedule.
      b1: beta_1 in [0, 1).
      b2: beta_2 in [0, 1).
      eps: epsilon > 0.
      weight_decay: lambda >= 0.
      mask: a pytree of booleans like the params (or a function of the params returning one):
        True where the decay applies; None decays every parameter.

    References:
      Loshchilov, Hutter, "Decoupled weight decay regularization", ICLR 2019. Matches
      ``torch.optim.AdamW``.
    """
    check_learning_rate(learning_rate)
    check_interval("weight_decay", weight_decay, 0.0)
    return optax.chain(
        scale_by_adam(b1, b2, eps),
        optax.add_decayed_weights(weight_decay, mask),
        optax.scale_by_learning_rate(learning_rate),
    )


def qhm(
    learning_rate: LearningRate, momentum: ArrayLike = 0.999, nu: ArrayLike = 0.7
) -> optax.GradientTransformation:
    r"""Quasi-hyperbolic momentum: :math:`b_t = \beta b_{t-1} + (1-\beta) g_t`,
    :math:`\theta_t = \theta_{t-1} - \eta ((1-\nu) g_t + \nu b_t)`
    (see :func:`jdl.optim.scale_by_qhm`).

    Args:
      learning_rate: eta >= 0, or a schedule.
      momentum: beta in [0, 1).
      nu: nu in [0, 1].

    References:
      Ma, Yarats, ICLR 2019. Matches ``torch_optimizer.QHM``.
    """
    return _with_learning_rate(learning_rate, scale_by_qhm, momentum, nu)


def qhadam(
    learning_rate: LearningRate,
    b1: ArrayLike = 0.995,
    b2: ArrayLike = 0.999,
    nu1: ArrayLike = 0.7,
    nu2: ArrayLike = 1.0,
    eps: ArrayLike = 1e-8,
) -> optax.GradientTransformation:
    r"""Quasi-hyperbolic Adam:
    :math:`\theta_t = \theta_{t-1} - \eta \frac{(1-\nu_1) g_t + \nu_1 \hat m_t}
    {\sqrt{(1-\nu_2) g_t^2 + \nu_2 \hat v_t} + \epsilon}` (see :func:`jdl.optim.scale_by_qhadam`).

    Args:
      learning_rate: eta >= 0, or a schedule.
      b1: beta_1 in [0, 1).
      b2: beta_2 in [0, 1).
      nu1: nu_1 in [0, 1].
      nu2: nu_2 in [0, 1].
      eps: epsilon > 0.

    References:
      Ma, Yarats, ICLR 2019. Matches ``torch_optimizer.QHAdam``.
    """
    return _with_learning_rate(learning_rate, scale_by_qhadam, b1, b2, nu1, nu2, eps)


def aggmo(
    learning_rate: LearningRate, betas: Sequence[ArrayLike] | jax.Array = (0.0, 0.9, 0.99)
) -> optax.GradientTransformation:
    r"""Aggregated momentum: :math:`b_t^{(i)} = \beta_i b_{t-1}^{(i)} + g_t`,
    :math:`\theta_t = \theta_{t-1} - \frac{\eta}{K} \sum_i b_t^{(i)}`
    (see :func:`jdl.optim.scale_by_aggmo`).

    Args:
      learning_rate: eta >= 0, or a schedule.
      betas: K >= 1 damping factors, each in [0, 1); equal betas keep separate buffers.

    References:
      Lucas, Sun, Zemel, Grosse, ICLR 2019. Matches ``torch_optimizer.AggMo`` for distinct betas.
    """
    return _with_learning_rate(learning_rate, scale_by_aggmo, betas)


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    f.__name__: f
    for f in (
        sgd,
        momentum,
        nesterov,
        adagrad,
        adadelta,
        adam,
        adamax,
        nadam,
        amsgrad,
        adamw,
        qhm,
        qhadam,
        aggmo,
    )
}
"""Every optimizer by name, in the order of the course: ``OPTIMIZERS["adam"](1e-3)``."""
