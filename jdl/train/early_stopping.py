"""Early stopping as a pure init/update pair over a NamedTuple state.

The state is a pytree of arrays, and ``update`` uses ``jnp.where`` only, so it runs under
``jax.jit`` and ``jax.vmap``: a population of runs stops member by member, and every numeric
hyper-parameter (``patience``, ``min_delta``, ``patience_increase``, ``baseline``,
``start_step``, ``divergence_threshold``, ``divergence_factor``) may be a traced array.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jdl.hyperparams import check_interval

Params = Any


class EarlyStoppingState(NamedTuple):
    """State of early stopping (one run; a population has a leading member axis).

    Attributes:
      best_metric: the lowest ("min" mode; highest in "max" mode) finite metric seen so far:
        every strict new minimum, significant or not (+inf, or -inf in "max" mode, before the
        first finite value).
      best_step: step of ``best_metric``; -1 before the first finite value.
      best_params: parameters at ``best_step`` (the initial parameters before any finite value).
      reference_metric: the metric of the last significant minimum, the one that last extended
        the deadline; a new minimum must beat it by ``min_delta`` (and beat ``baseline``) to
        extend the deadline again (+inf, or -inf in "max" mode, before the first one).
      deadline: training stops at the first update with ``step >= deadline``.
      should_stop: true once training should stop; it stays true.
      diverged: true when it stopped because of a non-finite value or the divergence
        threshold (the training step sets it too on a non-finite training loss).
      best_model_state: the model state at ``best_step`` (running statistics, saved with the
        parameters they normalise); None for a model without state.
    """

    best_metric: jax.Array  # shape=(), float32
    best_step: jax.Array  # shape=(), int32
    best_params: Params
    reference_metric: jax.Array  # shape=(), float32
    deadline: jax.Array  # shape=(), int32
    should_stop: jax.Array  # shape=(), bool
    diverged: jax.Array  # shape=(), bool
    best_model_state: Any = None


class EarlyStopping(NamedTuple):
    """An early-stopping rule: ``init(params, model_state=None) -> state`` and
    ``update(state, metric, step, params, model_state=None) -> state``, both pure."""

    init: Callable[..., EarlyStoppingState]
    update: Callable[..., EarlyStoppingState]


def early_stopping(
    patience: ArrayLike,
    *,
    min_delta: ArrayLike = 0.0,
    relative: bool = False,
    mode: str = "min",
    patience_increase: ArrayLike | None = None,
    baseline: ArrayLike | None = None,
    start_step: ArrayLike = 0,
    stop_on_nonfinite: bool = True,
    divergence_threshold: ArrayLike | None = None,
    divergence_factor: ArrayLike | None = None,
) -> EarlyStopping:
    r"""Early stopping with a deadline: Keras's patience or Bengio's multiplicative increase.

    With the monitored metric :math:`m_t` at step :math:`t` ("min" mode; "max" mirrors it),
    every strict new minimum is saved, as the course says ("if a new minimum is reached at
    step t, save the best model"):

    .. math::
        m_t < m^* \;\Rightarrow\; m^* \leftarrow m_t,\; t^* \leftarrow t,\;
        \theta^* \leftarrow \theta_t,

    with the model state :math:`\phi^* \leftarrow \phi_t` of a model that has one (BatchNorm's
    running statistics belong to the parameters they were gathered with); a non-finite
    :math:`m_t` is never a minimum. Only a *significant* new minimum extends
    the deadline :math:`T`: one that beats :math:`r`, the metric at the last extension,

    .. math::
        m_t < r - \delta \quad\text{or, relative,}\quad m_t < r (1 - \delta),

    and, when a baseline :math:`b` is given, also beats :math:`b` by the same rule. Then
    :math:`r \leftarrow m_t` and

    .. math::
        T \leftarrow \max(T, t + p) \;\text{(Keras, "t + constant")}
        \qquad\text{or}\qquad
        T \leftarrow \max(T, \lceil t \cdot k \rceil) \;\text{(Bengio, "t x constant")}.

    Because :math:`r` moves only on an extension, a slow steady decrease whose steps are each
    below :math:`\delta` still extends the deadline once they add up to more than
    :math:`\delta`. Initially :math:`T = t_0 + p` with :math:`t_0` = ``start_step``. Training
    stops at the first update with :math:`t \ge T`, immediately on a non-finite metric (when
    ``stop_on_nonfinite``), and immediately when the metric is worse than
    ``divergence_threshold`` or, with a divergence factor :math:`k`, than :math:`k m^*` (a
    loss grown k times over its best, as the learning-rate range test stops); the last ones
    also set ``diverged``. Once stopped, the state no
    longer changes. Updates with :math:`t < t_0` are ignored, except that a non-finite or
    diverging metric still stops (a run that blew up never recovers).

    With ``patience=3`` and metrics ``[1.0, 0.9, 0.95, 0.95, 0.95]`` at steps 0..4, training
    stops at step 4 and the best step is 1, as Keras's ``EarlyStopping(patience=3)`` does
    (flax's ``EarlyStopping`` stops one update later).

    Differences from other libraries (the deadline follows the same rule as theirs; only the
    restored model can differ):

    - Keras and flax save (Keras restores) only a significant improvement: their best metric
      is our :math:`r`. Here a new minimum smaller than :math:`\delta` is saved too. On
      flax's own ``min_delta=1e-3`` sequence ``[0.01, 0.005, 0.0033, 0.0025, 0.002, 0.0017,
      0.0014, ...]`` (flax ``patience=1``, here ``patience=2``) both stop at step 6; flax's best
      is step 4 (0.002), ours is step 6 (0.0014). On Keras's test sequences (patience 0-3 on
      ``[10, 9, 8, 9, 8.9, ...]``; ``[0.2, 0.15, 0.1, 0.11, 0.12]``) nothing changes, since
      ``min_delta=0`` there. With a baseline that is never beaten, Keras 3 restores the best
      epoch and so does this rule (the initial deadline here is :math:`t_0 + p`, one step after
      Keras's, whose wait counter starts at the first epoch).
    - Bengio's code saves every new minimum, as here, but measures the threshold against the
      previous minimum, so a decrease of 0.2% per evaluation never extends its deadline with
      ``min_delta=0.005, relative=True``; here it extends every third evaluation. With
      metrics ``1.0, 0.9, 0.899, 0.8985`` at steps 0..3 this rule (and Bengio's) restores step
      3, where Keras-style saving restored step 1.

    Args:
      patience: :math:`p > 0`, in the caller's unit of ``step`` (evaluations or iterations).
      min_delta: :math:`\delta \ge 0`, absolute (or relative, then in [0, 1)) improvement over
        :math:`r` that extends the deadline; any strict new minimum is saved regardless.
      relative: compare against :math:`m^*(1 \mp \delta)` instead of :math:`m^* \mp \delta`.
      mode: "min" (a loss) or "max" (an accuracy).
      patience_increase: :math:`k > 1`; when given, the deadline grows multiplicatively.
      baseline: a minimum that does not beat it is saved but does not extend the deadline.
      start_step: :math:`t_0 \ge 0`; earlier updates are ignored.
      stop_on_nonfinite: stop (and flag ``diverged``) on a NaN or infinite metric.
      divergence_threshold: stop (and flag ``diverged``) when the metric is worse than it.
      divergence_factor: :math:`k > 1`; stop (and flag ``diverged``) when the metric exceeds
        :math:`k m^*`, k times the best so far ("min" mode only: for a positive loss).

    Returns:
      An :class:`EarlyStopping` ``(init, update)`` pair; ``update(state, metric, step,
      params, model_state=None)`` is pure and works under ``jax.jit`` and ``jax.vmap``.

    Example::

      >>> es = early_stopping(3)
      >>> state = es.init({"w": jnp.zeros(2)})
      >>> for t, m in enumerate([1.0, 0.9, 0.95, 0.95, 0.95]):
      ...     state = es.update(state, m, t, {"w": jnp.full(2, t)})
      >>> bool(state.should_stop), int(state.best_step)
      (True, 1)

    References:
      L. Prechelt, "Early stopping - but when?", in Neural Networks: Tricks of the Trade,
      1998; Keras 3 ``keras.callbacks.EarlyStopping``; flax ``training.early_stopping``;
      Lightning ``EarlyStopping`` (``check_finite``, ``divergence_threshold``); Y. Bengio,
      "Practical recommendations for gradient-based training of deep architectures", 2012,
      arXiv:1206.5533, section 3.1.
    """
    if mode not in ("min", "max"):
        raise ValueError(f'mode must be "min" or "max", got {mode!r}')
    check_interval("patience", patience, 0.0, low_open=True)
    check_interval("min_delta", min_delta, 0.0, 1.0 if relative else math.inf)
    check_interval("start_step", start_step, 0.0)
    for name, value, low in (
        ("patience_increase", patience_increase, 1.0),
        ("baseline", baseline, -math.inf),
        ("divergence_threshold", divergence_threshold, -math.inf),
    ):
        if value is not None:
            check_interval(name, value, low, low_open=name == "patience_increase")
    if divergence_factor is not None:
        check_interval("divergence_factor", divergence_factor, 1.0, low_open=True)
        if mode != "min":
            raise ValueError('divergence_factor needs mode="min" (a positive loss)')
    # Work in "min" form internally: a "max" metric m is compared as -m.
    sign = 1.0 if mode == "min" else -1.0

    def beats(metric: jax.Array, reference: jax.Array) -> jax.Array:
        """metric < reference - delta (or reference * (1 - delta)), both in "min" form."""
        if relative:
            # In "min" form a "max" metric's r*(1 + delta) is -(-r)*(1 + delta).
            factor = 1.0 - sign * jnp.asarray(min_delta, jnp.float32)
            return metric < reference * factor
        return metric < reference - jnp.asarray(min_delta, jnp.float32)

    def init(params: Params, model_state: Any = None) -> EarlyStoppingState:
        return EarlyStoppingState(
            best_metric=jnp.asarray(sign * jnp.inf, jnp.float32),
            best_step=jnp.asarray(-1, jnp.int32),
            best_params=params,
            reference_metric=jnp.asarray(sign * jnp.inf, jnp.float32),
            deadline=_to_step(jnp.asarray(start_step) + jnp.asarray(patience)),
            should_stop=jnp.asarray(False),
            diverged=jnp.asarray(False),
            best_model_state=model_state,
        )

    def update(
        state: EarlyStoppingState,
        metric: ArrayLike,
        step: ArrayLike,
        params: Params,
        model_state: Any = None,
    ) -> EarlyStoppingState:
        metric = jnp.asarray(metric, jnp.float32)
        step = jnp.asarray(step, jnp.int32)
        m = sign * metric
        active = (step >= jnp.asarray(start_step)) & ~state.should_stop
        # Every strict new minimum is saved; m < inf holds for the first finite value.
        new_best = active & jnp.isfinite(m) & (m < sign * state.best_metric)
        # Only a significant one, measured against the last extension, extends the deadline.
        reference = sign * state.reference_metric
        significant = new_best & (jnp.isinf(reference) | beats(m, reference))
        if baseline is not None:
            significant = significant & beats(m, sign * jnp.asarray(baseline, jnp.float32))
        if patience_increase is None:
            grown = step + _to_step(patience)
        else:
            grown = _to_step(step.astype(jnp.float32) * jnp.asarray(patience_increase))
        deadline = jnp.where(significant, jnp.maximum(state.deadline, grown), state.deadline)
        diverged = jnp.zeros((), bool)
        if stop_on_nonfinite:
            diverged = diverged | ~jnp.isfinite(metric)
        if divergence_threshold is not None:
            diverged = diverged | (m > sign * jnp.asarray(divergence_threshold, jnp.float32))
        if divergence_factor is not None:
            limit = jnp.asarray(divergence_factor, jnp.float32) * state.best_metric
            diverged = diverged | (jnp.isfinite(limit) & (metric > limit))
        diverged = diverged & ~state.should_stop
        should_stop = state.should_stop | diverged | (active & (step >= deadline))

        def keep_best(new: Any, old: Any) -> Any:
            return jax.tree.map(lambda a, b: jnp.where(new_best, a, b), new, old)

        return EarlyStoppingState(
            best_metric=jnp.where(new_best, metric, state.best_metric),
            best_step=jnp.where(new_best, step, state.best_step),
            best_params=keep_best(params, state.best_params),
            reference_metric=jnp.where(significant, metric, state.reference_metric),
            deadline=deadline,
            should_stop=should_stop,
            diverged=state.diverged | diverged,
            best_model_state=keep_best(model_state, state.best_model_state),
        )

    return EarlyStopping(init, update)


def _to_step(value: ArrayLike) -> jax.Array:
    """Rounds a (possibly fractional) step count up to an int32: t >= x iff t >= ceil(x)."""
    value = jnp.asarray(value)
    if jnp.issubdtype(value.dtype, jnp.integer):
        return value.astype(jnp.int32)
    return jnp.ceil(value).astype(jnp.int32)
