"""Synthetic data of the course's examples: a noisy smooth curve (under/overfitting) and
Gaussian blobs (classification), drawn from a PRNG key; re-exported by `jdl.data`."""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from jdl.data import Dataset

__all__ = ["synthetic_classification", "synthetic_regression"]


def _as_key(key_or_seed: jax.Array | int) -> jax.Array:
    if isinstance(key_or_seed, int | np.integer) and not isinstance(key_or_seed, bool):
        return jax.random.key(int(key_or_seed))
    return key_or_seed


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_nonnegative(name: str, value: float) -> None:
    if isinstance(value, int | float | np.number) and not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def synthetic_regression(
    key_or_seed: jax.Array | int, n: int, *, n_features: int = 1, noise_std: float = 0.1
) -> Dataset:
    """Noisy samples of a smooth function, the curve-fitting example of under/overfitting.

    x_i ~ U[-1, 1]^d and y_i = (1/d) sum_k sin(pi x_ik) + noise_std * eps_i, eps_i ~ N(0, 1);
    with d = 1 this is Bishop's sin(2 pi x) on [0, 1] moved to [-1, 1].

    Args:
      key_or_seed: a PRNG key or an int seed.
      n: number of examples (>= 1).
      n_features: input dimension d (>= 1).
      noise_std: standard deviation of the target noise (>= 0).

    Returns:
      ``Dataset(x, y)`` with x float32 of shape (n, d) and y float32 of shape (n, 1).

    References:
      C. M. Bishop, Pattern Recognition and Machine Learning, 2006, section 1.1.
    """
    _check_count("n", n, 1)
    _check_count("n_features", n_features, 1)
    _check_nonnegative("noise_std", noise_std)
    x, y = _regression_arrays(_as_key(key_or_seed), noise_std, n, n_features)
    from jdl.data import dataset  # jdl.data re-exports this module's functions

    return dataset(x, y, name="synthetic regression")


@functools.partial(jax.jit, static_argnums=(2, 3))
def _regression_arrays(
    key: jax.Array, noise_std: jax.typing.ArrayLike, n: int, n_features: int
) -> tuple[jax.Array, jax.Array]:
    key_x, key_eps = jax.random.split(key)
    x = jax.random.uniform(key_x, (n, n_features), minval=-1.0, maxval=1.0)
    f = jnp.mean(jnp.sin(jnp.pi * x), axis=1, keepdims=True)
    return x, f + noise_std * jax.random.normal(key_eps, (n, 1))


def synthetic_classification(
    key_or_seed: jax.Array | int,
    n: int,
    *,
    n_classes: int = 2,
    n_features: int = 2,
    separation: float = 2.0,
) -> Dataset:
    """Gaussian blobs: one isotropic unit-variance Gaussian per class.

    Class centres mu_c ~ N(0, separation^2 I_d) are drawn once from the key; the labels are
    balanced and interleaved, y_i = i mod C (so any prefix is balanced too), and
    x_i ~ N(mu_{y_i}, I_d). A larger ``separation``
    makes the classes easier to tell apart.

    Args:
      key_or_seed: a PRNG key or an int seed.
      n: number of examples (>= n_classes).
      n_classes: number of classes C (>= 2).
      n_features: input dimension d (>= 1).
      separation: standard deviation of the class centres (>= 0).

    Returns:
      ``Dataset(x, y)`` with x float32 of shape (n, d) and y int32 labels of shape (n,).
    """
    _check_count("n_classes", n_classes, 2)
    _check_count("n", n, n_classes)
    _check_count("n_features", n_features, 1)
    _check_nonnegative("separation", separation)
    x, y = _blob_arrays(_as_key(key_or_seed), separation, n, n_classes, n_features)
    from jdl.data import dataset

    return dataset(x, y, name="synthetic classification", num_classes=n_classes)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _blob_arrays(
    key: jax.Array, separation: jax.typing.ArrayLike, n: int, n_classes: int, n_features: int
) -> tuple[jax.Array, jax.Array]:
    key_mu, key_x = jax.random.split(key)
    centres = separation * jax.random.normal(key_mu, (n_classes, n_features))
    y = jnp.arange(n, dtype=jnp.int32) % n_classes
    return centres[y] + jax.random.normal(key_x, (n, n_features)), y
