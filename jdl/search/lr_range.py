r"""The learning-rate range test over seeds: one population, one compiled program.

Every member (one per seed) trains with a learning rate that grows exponentially from
:math:`\eta_{min}` to :math:`\eta_{max}` over K steps,

.. math:: \eta_t = \eta_{min} (\eta_{max} / \eta_{min})^{t / (K - 1)}, \quad t = 0, \dots, K-1,

and its loss on the validation set is recorded every ``eval_every`` steps. The loss falls while
the rate is useful and blows up once it is too large; a member whose loss exceeds k times its
minimum is frozen and flagged (early stopping's ``divergence_factor``), the others continue.
The curves of S seeds give a band, so the suggested rate comes with its spread over seeds.
The members are a `jdl.search.Search` population (``lr_min``, ``lr_max`` are its data), so the
test runs on the run driver: progress bar, Ctrl-C, checkpoints and resume.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from jdl.data import Dataset
from jdl.hyperparams import check_count, check_interval
from jdl.search.grid import population
from jdl.search.results import SearchResult
from jdl.search.search import Search
from jdl.train import early_stopping
from jdl.types import EvalFn, LossFn, Params

__all__ = ["RangeTestResult", "exponential_rate", "lr_range_test", "suggest"]

RULE = "steepest descent of the seed-mean smoothed loss against log(learning rate)"


class RangeTestResult(NamedTuple):
    """What `lr_range_test` measured, as NumPy arrays; C evaluations, S seeds.

    Attributes:
      learning_rate: shape (C,): the rate of the last step before each evaluation.
      loss: shape (S, C): each seed's validation loss, smoothed (NaN once it stopped).
      raw_loss: shape (S, C): the same, unsmoothed.
      mean, low, high: shape (C,): the seed mean of ``loss`` and the band (min and max over
        seeds), over the evaluations where every seed still trains (NaN after).
      suggestion: the suggested learning rate (`suggest` on ``mean``).
      per_seed: shape (S,): `suggest` on each seed's own curve (the spread over seeds).
      rate_at_min: the rate at the minimum of ``mean``; ``rate_at_min / 10`` is the other
        usual rule.
      rule: how ``suggestion`` was chosen, in words.
      diverged: shape (S,): the seeds stopped by divergence.
      search: the underlying `SearchResult` (history, timing, interrupted).
    """

    learning_rate: np.ndarray
    loss: np.ndarray
    raw_loss: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    suggestion: float
    per_seed: np.ndarray
    rate_at_min: float
    rule: str
    diverged: np.ndarray
    search: SearchResult


def exponential_rate(lr_min: ArrayLike, lr_max: ArrayLike, steps: int) -> optax.Schedule:
    r"""The range test's schedule :math:`\eta_t = \eta_{min} (\eta_{max} /
    \eta_{min})^{\min(t, K-1) / (K - 1)}`; ``lr_min`` and ``lr_max`` may be traced.

    Args:
      lr_min: :math:`\eta_{min} > 0`.
      lr_max: :math:`\eta_{max} \ge \eta_{min}`.
      steps: K >= 2 (a Python int).

    References:
      L. N. Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017,
      arXiv:1506.01186, section 3.3 ("LR range test").
    """
    last = check_count("steps", steps) - 1
    if last < 1:
        raise ValueError(f"steps must be >= 2 for a range of learning rates, got {steps}")

    def schedule(count: jax.Array) -> jax.Array:
        frac = jnp.minimum(count, last).astype(jnp.float32) / last
        log_min = jnp.log(jnp.asarray(lr_min, jnp.float32))
        log_max = jnp.log(jnp.asarray(lr_max, jnp.float32))
        return jnp.exp(log_min + frac * (log_max - log_min))

    return schedule


def smooth(values: np.ndarray, beta: float) -> np.ndarray:
    r"""Exponential moving average with bias correction along the last axis, NaN kept:
    :math:`a_c = \beta a_{c-1} + (1-\beta) x_c`, :math:`\hat a_c = a_c / (1 - \beta^c)`."""
    out = np.full(values.shape, np.nan)
    avg = np.zeros(values.shape[:-1])
    for c in range(values.shape[-1]):
        avg = beta * avg + (1 - beta) * values[..., c]
        out[..., c] = avg / (1 - beta ** (c + 1))
    return out


def suggest(rates: np.ndarray, loss: np.ndarray) -> tuple[float, float]:
    r"""The suggested rate and the rate at the minimum of a loss curve (NaN past its end).

    The suggestion is the rate of steepest descent before the minimum,
    :math:`\arg\min_c \partial L / \partial \log \eta` (central differences), the point where
    a step of the rate buys the most decrease (L. N. Smith, 2017; fastai's ``steep``). A curve
    that never decreases gives its first rate.

    Returns:
      ``(suggestion, rate_at_min)``; both NaN when the curve has fewer than two finite points.
    """
    finite = np.isfinite(loss)
    n = int(np.argmin(finite)) if not finite.all() else len(loss)
    if n < 2:
        return float("nan"), float("nan")
    curve, x = loss[:n], np.log(rates[:n])
    at_min = int(np.argmin(curve))
    if at_min < 1:
        return float(rates[0]), float(rates[0])
    slope = np.gradient(curve[: at_min + 1], x[: at_min + 1])
    return float(rates[int(np.argmin(slope))]), float(rates[at_min])


def lr_range_test(
    init_fn: Callable[[jax.Array], Params],
    optimizer: Callable[[optax.Schedule], optax.GradientTransformation],
    train: Dataset,
    val: Dataset,
    *,
    loss_fn: LossFn,
    eval_fn: EvalFn,
    lr_min: float = 1e-5,
    lr_max: float = 10.0,
    steps: int = 200,
    seeds: int | Sequence[int] = 3,
    batch_size: int = 128,
    eval_every: int = 2,
    divergence_factor: float = 4.0,
    smoothing: float = 0.6,
    devices: int | Sequence[jax.Device] | None = None,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
) -> RangeTestResult:
    r"""The learning-rate range test, every seed in one compiled program.

    Seed s trains ``init_fn``'s parameters with ``optimizer(schedule)``, the schedule
    :math:`\eta_t = \eta_{min} (\eta_{max} / \eta_{min})^{t / (K-1)}` (`exponential_rate`);
    every ``eval_every`` steps its validation loss :math:`L_c` is recorded at the rate of the
    last step. A seed stops when :math:`L_c > k \min_{c' < c} L_{c'}` (diverged). The curves
    are smoothed, :math:`\hat L_c` = `smooth` (EMA with bias correction, factor ``smoothing``),
    and the suggestion is the steepest descent of the seed mean (`suggest`); ``rate_at_min /
    10`` (the rate at the mean's minimum over ten) is the other common rule.

    Args:
      init_fn: ``init_fn(key) -> params`` (seed s: ``key = split(key(s))[0]``, as in `Search`).
      optimizer: ``optimizer(learning_rate) -> transformation``, e.g. ``jdl.optim.adam``.
      train, val: the data; the loss recorded is ``eval_fn(params, val)["loss"]``.
      loss_fn, eval_fn: as for `jdl.search.Search`.
      lr_min, lr_max: the range, 0 < lr_min < lr_max.
      steps: K >= 2, the steps of the ramp.
      seeds: a count S or a list of seeds.
      batch_size: the mini-batch size.
      eval_every: steps between two recorded losses.
      divergence_factor: k > 1.
      smoothing: the EMA factor beta in [0, 1).
      devices, progress, checkpoint_dir: as for `jdl.search.Search.run`.

    Returns:
      A `RangeTestResult`.

    Raises:
      ValueError: a bound, count or factor out of range, before anything compiles.

    Example::

      >>> r = lr_range_test(init_fn, jdl.optim.adam, splits.train, splits.val,
      ...                   loss_fn=loss_fn, eval_fn=eval_fn, seeds=3)
      >>> r.suggestion, r.rate_at_min / 10

    References:
      L. N. Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017,
      arXiv:1506.01186; L. N. Smith, "A disciplined approach to neural network
      hyper-parameters: Part 1", 2018, arXiv:1803.09820; fastai ``lr_find``.
    """
    for name, value in (("lr_min", lr_min), ("lr_max", lr_max)):
        check_interval(name, value, 0.0, low_open=True)
    if not lr_min < lr_max:
        raise ValueError(f"lr_min must be < lr_max, got {lr_min} and {lr_max}")
    check_interval("divergence_factor", divergence_factor, 1.0, low_open=True)
    check_interval("smoothing", smoothing, 0.0, 1.0, high_open=True)
    if check_count("steps", steps) < 2:
        raise ValueError(f"steps must be >= 2 for a range of learning rates, got {steps}")
    search = Search(
        init_fn,
        lambda hp: optimizer(exponential_rate(hp["lr_min"], hp["lr_max"], steps)),
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        batch_size=batch_size,
        eval_every=min(eval_every, steps),
        early_stopping=early_stopping(2**30, divergence_factor=divergence_factor),
        devices=devices,
    )
    pop = population({"lr_min": [lr_min], "lr_max": [lr_max]}, seeds)
    result = search.run(
        pop, train, val, steps=steps, progress=progress, checkpoint_dir=checkpoint_dir
    )
    at = result.history["step"]  # steps done at each evaluation; the last rate is eta(at - 1)
    rates = np.asarray(exponential_rate(lr_min, lr_max, steps)(jnp.asarray(at - 1)), np.float64)
    raw = np.asarray(result.history["val_loss"][:, :, 0], np.float64).T  # (S, C)
    loss = smooth(raw, smoothing)
    loss = np.where(np.isfinite(raw), loss, np.nan)
    every = np.all(np.isfinite(loss), axis=0)
    n = int(np.argmin(every)) if not every.all() else len(every)
    mean = np.full(len(rates), np.nan)
    low, high = mean.copy(), mean.copy()
    mean[:n], low[:n], high[:n] = loss[:, :n].mean(0), loss[:, :n].min(0), loss[:, :n].max(0)
    suggestion, rate_at_min = suggest(rates, mean)
    per_seed = np.array([suggest(rates, curve)[0] for curve in loss])
    return RangeTestResult(
        learning_rate=rates,
        loss=loss,
        raw_loss=raw,
        mean=mean,
        low=low,
        high=high,
        suggestion=suggestion,
        per_seed=per_seed,
        rate_at_min=rate_at_min,
        rule=RULE,
        diverged=np.asarray(result.diverged[:, 0]),
        search=result,
    )
