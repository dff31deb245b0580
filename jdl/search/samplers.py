r"""Random search over a declared space: configurations drawn, seeded and reproducible.

A *space* maps each hyper-parameter's name to a distribution: `log_uniform`, `uniform`,
`integer` or `categorical`. A `Sampler` turns draw number i into one configuration by mapping a
point :math:`u_i \in [0, 1)^d` of the unit cube through each distribution's inverse CDF; the
points are pseudo-random (NumPy's PCG64 from ``seed``) or quasi-random (scrambled Sobol or
Halton from ``scipy.stats.qmc``, which cover the cube more evenly). Draw i is the same whatever
the draws asked before it, so a scheduler that refills slots (ASHA) asks for draws H, H + 1,
... and a resumed run draws what the uninterrupted one did. `random_search` makes a
`jdl.search.Population` of the first H draws, as the grids do.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import qmc

from jdl.hyperparams import check_count
from jdl.search.grid import Population, population

__all__ = [
    "Distribution",
    "Sampler",
    "categorical",
    "integer",
    "log_uniform",
    "random_search",
    "uniform",
]

METHODS = ("random", "sobol", "halton")


class Distribution(NamedTuple):
    """One hyper-parameter's distribution: ``kind`` in {"log_uniform", "uniform", "integer",
    "categorical"} and its ``values`` (the bounds, or the categories)."""

    kind: str
    values: tuple[float, ...]

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """The values at the quantiles ``u`` in [0, 1) (the inverse CDF), float64."""
        if self.kind == "log_uniform":
            low, high = math.log(self.values[0]), math.log(self.values[1])
            return np.exp(low + u * (high - low))
        if self.kind == "uniform":
            low, high = self.values
            return low + u * (high - low)
        if self.kind == "integer":
            low, high = self.values
            return np.minimum(np.floor(low + u * (high - low + 1)), high)
        k = len(self.values)
        return np.asarray(self.values, np.float64)[np.minimum((u * k).astype(np.int64), k - 1)]


def _bounds(name: str, low: Any, high: Any, *, positive: bool = False) -> tuple[float, float]:
    for which, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, int | float | np.number):
            raise ValueError(f"{name}: {which} must be a number, got {v!r}")
        if not math.isfinite(v) or (positive and v <= 0):
            allowed = "finite and > 0" if positive else "finite"
            raise ValueError(f"{name}: {which} must be {allowed}, got {v!r}")
    if low > high:
        raise ValueError(f"{name}: low must be <= high, got low={low!r} > high={high!r}")
    return float(low), float(high)


def log_uniform(low: float, high: float) -> Distribution:
    r"""Log-uniform on [low, high]: :math:`\lambda = \text{low} \cdot (\text{high} /
    \text{low})^u`, u uniform on [0, 1) (a learning rate's or a weight decay's scale).

    References:
      J. Bergstra, Y. Bengio, "Random Search for Hyper-Parameter Optimization", JMLR 13 (2012),
      section 2.4 (learning rates drawn uniformly in the log domain).
    """
    return Distribution("log_uniform", _bounds("log_uniform", low, high, positive=True))


def uniform(low: float, high: float) -> Distribution:
    r"""Uniform on [low, high]: :math:`\lambda = \text{low} + u (\text{high} - \text{low})`."""
    return Distribution("uniform", _bounds("uniform", low, high))


def integer(low: int, high: int) -> Distribution:
    r"""Uniform on the integers low, ..., high (both included): :math:`\lambda = \lfloor
    \text{low} + u (\text{high} - \text{low} + 1) \rfloor` (as a float: hyper-parameters are
    data)."""
    for which, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ValueError(f"integer: {which} must be an int, got {v!r}")
    return Distribution("integer", _bounds("integer", low, high))


def categorical(values: Sequence[float]) -> Distribution:
    r"""One of ``values``, each with probability 1/k: :math:`\lambda = v_{\lfloor u k
    \rfloor}` (numbers: hyper-parameters are data; code a family as 0, 1, ...)."""
    a = np.asarray(values)
    if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"categorical needs a non-empty list of numbers, got {values!r}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"categorical values must be finite, got {a.tolist()}")
    return Distribution("categorical", tuple(float(v) for v in a))


class Sampler:
    r"""Draws configurations of a declared space, reproducibly by draw number.

    Draw i maps the i-th point :math:`u_i \in [0, 1)^d` of a sequence through each
    hyper-parameter's inverse CDF (the names in sorted order are the cube's axes):

    .. math:: \lambda_{i,k} = F_k^{-1}(u_{i,k}), \qquad k = 1, \dots, d.

    The sequence is pseudo-random (``method="random"``: PCG64 seeded with ``seed``) or a
    scrambled low-discrepancy sequence (``"sobol"``, ``"halton"``, seeded with ``seed``);
    the first n points of a Sobol sequence are best balanced when n is a power of 2.

    Args:
      space: name -> `Distribution` (`log_uniform`, `uniform`, `integer`, `categorical`).
      seed: the sequence's seed (an int >= 0).
      method: "random", "sobol" or "halton".

    Example::

      >>> sampler = Sampler({"learning_rate": log_uniform(1e-4, 1.0), "b1": uniform(0.8, 0.99)})
      >>> sampler.draw(0, 16)["learning_rate"].shape
      (16,)

    References:
      J. Bergstra, Y. Bengio, "Random Search for Hyper-Parameter Optimization", JMLR 13 (2012);
      I. M. Sobol', "On the distribution of points in a cube", 1967; J. H. Halton, 1960;
      ``scipy.stats.qmc`` (Owen scrambling).
    """

    def __init__(self, space: Mapping[str, Distribution], *, seed: int = 0, method: str = "random"):
        if not isinstance(space, Mapping) or not space:
            raise ValueError("space must be a non-empty mapping name -> distribution")
        for name, dist in space.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"hyper-parameter names must be identifiers, got {name!r}")
            if not isinstance(dist, Distribution):
                raise TypeError(
                    f"space[{name!r}] must be built by log_uniform, uniform, integer or "
                    f"categorical, got {type(dist).__name__}"
                )
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.space = {k: space[k] for k in sorted(space)}
        self.seed, self.method = int(seed), method
        self.config = {
            "method": method,
            "seed": self.seed,
            "space": {k: [d.kind, list(d.values)] for k, d in self.space.items()},
        }

    def unit(self, start: int, num: int) -> np.ndarray:
        """Points ``start, ..., start + num - 1`` of the sequence, shape (num, d), in [0, 1)."""
        d = len(self.space)
        if self.method == "random":
            # PCG64 fills row by row: the first rows do not depend on how many follow.
            return np.random.default_rng(self.seed).random((start + num, d))[start:]
        engine_type = qmc.Sobol if self.method == "sobol" else qmc.Halton
        engine = engine_type(d, scramble=True, seed=self.seed)
        with warnings.catch_warnings():
            # Sobol's balance warning for counts that are not powers of 2: stated above.
            warnings.filterwarnings("ignore", "The balance properties", UserWarning)
            if start:  # (Sobol's fast_forward refuses 0)
                engine.fast_forward(start)
            return engine.random(num)

    def draw(self, start: int, num: int) -> dict[str, np.ndarray]:
        """Configurations ``start, ..., start + num - 1``: name -> float64 values, shape
        (num,)."""
        if isinstance(start, bool) or not isinstance(start, int | np.integer) or start < 0:
            raise ValueError(f"start must be an int >= 0, got {start!r}")
        num = check_count("num", num)
        u = self.unit(int(start), num)
        return {k: dist.ppf(u[:, i]) for i, (k, dist) in enumerate(self.space.items())}


def random_search(
    space: Mapping[str, Distribution] | Sampler,
    num: int,
    seeds: int | Sequence[int] = 1,
    *,
    seed: int = 0,
    method: str = "random",
) -> Population:
    """A population of ``num`` configurations drawn from ``space`` (draws 0, ..., num - 1 of
    its `Sampler`), crossed with ``seeds``: the random-search counterpart of the grids.

    Args:
      space: name -> `Distribution`, or a `Sampler` (then ``seed`` and ``method`` are its own).
      num: H, the number of configurations.
      seeds: a count S or a list of seeds, as in `jdl.search.population`.
      seed: the draws' seed.
      method: "random", "sobol" or "halton".

    Returns:
      A `Population`.

    Raises:
      ValueError: a bad space, count, seed or method.
    """
    sampler = space if isinstance(space, Sampler) else Sampler(space, seed=seed, method=method)
    return population(sampler.draw(0, num), seeds)
