r"""Grids of hyper-parameters crossed with seeds: the population that a search trains.

A *population* is H configurations of numeric hyper-parameters (a log grid of learning rates,
a Cartesian product or zipped lists of several) crossed with S seeds: P = S x H members.
Member (s, h) is an ordinary `jdl.train` run with the hyper-parameters of configuration h and
seed s; `jdl.search.Search` trains them all as one compiled program. The values are kept in
float64 on the host (exact in the reports) and become float32 on the devices.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jdl.hyperparams import check_count
from jdl.types import HParams

__all__ = [
    "HParams",
    "Population",
    "check_count",
    "log_grid",
    "population",
    "product",
    "zipped",
]


def check_chunks(name: str, value: Any, eval_every: int) -> int:
    """``value`` (a number of steps, named ``name``) checked to be a positive multiple of
    ``eval_every``: the schedulers that act between chunks (successive halving's rungs,
    population-based training's events) need whole chunks."""
    value = check_count(name, value)
    if value % eval_every:
        raise ValueError(
            f"{name} ({value}) must be a multiple of the search's eval_every ({eval_every})"
        )
    return value


def log_grid(low: float, high: float, num: int) -> np.ndarray:
    r"""``num`` values evenly spaced on a log scale from ``low`` to ``high``, both included.

    .. math:: x_i = \text{low} \cdot (\text{high} / \text{low})^{i / (\text{num} - 1)},
        \quad i = 0, \dots, \text{num} - 1

    (the single value ``low`` when num = 1): the course's advice to try learning rates spread
    over orders of magnitude (1e-4, 1e-3, ..., 1).

    Args:
      low: smallest value, finite and > 0.
      high: largest value, finite and >= low.
      num: number of values >= 1.

    Returns:
      A float64 NumPy array of shape (num,).

    Raises:
      ValueError: a bound not finite and positive, low > high, or num not a positive int.

    References:
      Y. Bengio, "Practical recommendations for gradient-based training of deep
      architectures", 2012, arXiv:1206.5533, section 3.1 (log-scale learning-rate search).
    """
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, int | float | np.number):
            raise ValueError(f"{name} must be a number > 0, got {v!r}")
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be finite and > 0, got {v!r}")
    if low > high:
        raise ValueError(f"low must be <= high, got low={low!r} > high={high!r}")
    num = check_count("num", num)
    return np.geomspace(low, high, num)


def _axis_values(name: str, values: Any) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"hyper-parameter {name!r} needs a non-empty 1-D list of values")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"hyper-parameter {name!r} must be numeric, got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"hyper-parameter {name!r} has non-finite values: {a.tolist()}")
    return a.astype(np.float64)


def product(**axes: Sequence[float]) -> dict[str, np.ndarray]:
    r"""The Cartesian product of hyper-parameter lists: every combination once.

    ``product(learning_rate=[a, b], weight_decay=[c, d])`` gives the H = 4 configurations
    (a, c), (a, d), (b, c), (b, d), the last name varying fastest:
    :math:`H = \prod_k n_k`.

    Args:
      **axes: name -> non-empty 1-D list of finite numbers.

    Returns:
      name -> float64 array of shape (H,).

    Raises:
      ValueError: no axis, an empty or non-numeric list, or a non-finite value.
    """
    if not axes:
        raise ValueError("product needs at least one hyper-parameter")
    lists = {k: _axis_values(k, v) for k, v in axes.items()}
    combos = np.array(list(itertools.product(*lists.values())), dtype=np.float64)
    return {k: combos[:, i] for i, k in enumerate(lists)}


def zipped(**axes: Sequence[float]) -> dict[str, np.ndarray]:
    """Hyper-parameter lists taken together, position by position (like ``zip``).

    ``zipped(learning_rate=[a, b], b1=[c, d])`` gives the H = 2 configurations (a, c), (b, d).

    Args:
      **axes: name -> 1-D list of finite numbers, all of the same length H >= 1.

    Returns:
      name -> float64 array of shape (H,).

    Raises:
      ValueError: no axis, lists of different lengths, an empty or non-numeric list, or a
        non-finite value.
    """
    if not axes:
        raise ValueError("zipped needs at least one hyper-parameter")
    lists = {k: _axis_values(k, v) for k, v in axes.items()}
    lengths = {k: len(v) for k, v in lists.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"zipped hyper-parameters need lists of one length, got {lengths}")
    return lists


class Population(NamedTuple):
    """H hyper-parameter configurations crossed with S seeds: member (s, h) for each pair.

    Attributes:
      hparams: name -> values of the H configurations, float64 of shape (H,) (float32 on the
        devices).
      seeds: the S seeds, int64 of shape (S,).
    """

    hparams: dict[str, np.ndarray]
    seeds: np.ndarray

    @property
    def num_configs(self) -> int:
        """H, the number of hyper-parameter configurations."""
        return len(next(iter(self.hparams.values())))

    @property
    def num_members(self) -> int:
        """P = S x H."""
        return len(self.seeds) * self.num_configs

    def config(self, h: int) -> dict[str, float]:
        """Configuration h as Python floats."""
        return {k: float(v[h]) for k, v in self.hparams.items()}


def population(hparams: Mapping[str, Any], seeds: int | Sequence[int] = 1) -> Population:
    """A population: configurations (from `log_grid`, `product`, `zipped` or by hand) x seeds.

    Args:
      hparams: name -> values of the H configurations, 1-D and of one length; a learning rate
        is named ``"learning_rate"`` and must be > 0.
      seeds: a count S (the seeds 0, ..., S-1) or a list of distinct non-negative ints.

    Returns:
      A `Population`.

    Raises:
      ValueError: no hyper-parameter, lists of different lengths, empty, non-numeric or
        non-finite values, a non-positive learning rate, or bad seeds.
    """
    if not isinstance(hparams, Mapping) or not hparams:
        raise ValueError("hparams must be a non-empty mapping name -> list of values")
    for name in hparams:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"hyper-parameter names must be identifiers, got {name!r}")
    values = zipped(**hparams)
    lr = values.get("learning_rate")
    if lr is not None and np.any(lr <= 0):
        raise ValueError(f"learning_rate values must be > 0, got {lr.tolist()}")
    if isinstance(seeds, int | np.integer) and not isinstance(seeds, bool):
        seed_list = np.arange(check_count("seeds", seeds), dtype=np.int64)
    else:
        try:
            seed_list = np.asarray(seeds)
        except (TypeError, ValueError) as e:
            raise ValueError(f"seeds must be a count or a list of ints, got {seeds!r}") from e
        if (
            seed_list.ndim != 1
            or seed_list.size == 0
            or not np.issubdtype(seed_list.dtype, np.integer)
        ):
            raise ValueError(f"seeds must be a count or a non-empty list of ints, got {seeds!r}")
        if np.any(seed_list < 0) or len(np.unique(seed_list)) != len(seed_list):
            raise ValueError(f"seeds must be distinct non-negative ints, got {seeds!r}")
        seed_list = seed_list.astype(np.int64)
    return Population(values, seed_list)
