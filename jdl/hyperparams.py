"""Hyper-parameters are data: construction-time checks of their concrete values.

Every numeric hyper-parameter of jdl (a learning rate, a momentum, a patience, a penalty's
weight) may be a Python number, a NumPy array or a JAX array. Concrete values (Python numbers,
NumPy or concrete JAX arrays) are checked against their allowed interval and rejected with a
``ValueError`` naming the argument and the interval. Traced values (inside ``jit``/``vmap``/
``grad``) are not checked and never branched on, so a factory such as
``lambda hp: jdl.optim.adam(hp["learning_rate"])`` can be vmapped.
"""

import math
from typing import Any

import jax
import numpy as np

__all__ = [
    "check_coefficient",
    "check_count",
    "check_interval",
    "check_learning_rate",
    "is_traced",
]


def is_traced(value: Any) -> bool:
    """True for an abstract value inside ``jit``/``vmap``/``grad`` (a tracer), whose number is
    not known until it runs; False for Python numbers, NumPy arrays and concrete JAX arrays.

    Asked through public API only: a tracer refuses conversion to a NumPy array.
    """
    if not isinstance(value, jax.Array):
        return False
    try:
        np.asarray(value)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return True
    return False


def check_interval(
    name: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = True,
) -> None:
    """Raise ``ValueError`` unless every element of a concrete ``value`` lies in the interval.

    The interval is ``[low, high)`` by default; ``low_open`` / ``high_open`` choose which ends are
    excluded. A traced ``value`` is accepted as it is.

    Args:
      name: the argument's name, used in the message.
      value: a Python number, a NumPy array or a JAX array (concrete or traced).
      low: lower end of the interval.
      high: upper end of the interval (``inf`` for none).
      low_open: exclude ``low`` itself.
      high_open: exclude ``high`` itself.

    Raises:
      TypeError: ``value`` is not a real number or an array of real numbers.
      ValueError: a concrete element lies outside the interval (NaN always does).
    """
    if is_traced(value):
        return
    if isinstance(value, bool) or callable(value) or isinstance(value, str | bytes):
        raise TypeError(f"{name} must be a real number or an array of them, got {value!r}")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{name} must be a real number or an array of them, got {value!r}"
        ) from error
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} must be a real number or an array of them, got {value!r}")
    array = array.astype(np.float64)
    above = array > low if low_open else array >= low
    below = array < high if high_open else array <= high
    if not np.all(above & below):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


def check_count(name: str, value: Any) -> int:
    """``value`` as an int, checked >= 1 (a count or a number of steps): counts fix shapes and
    loop lengths, so they are Python ints, never traced.

    Raises:
      ValueError: ``value`` is not an int (a bool is not) or is below 1.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_learning_rate(learning_rate: Any) -> None:
    """Check a learning rate: a schedule ``count -> value`` (not checked) or a value >= 0."""
    if callable(learning_rate):
        return
    check_interval("learning_rate", learning_rate, 0.0)


def check_coefficient(name: str, value: Any) -> None:
    """Check a penalty's weight (lambda in L + lambda R): a finite scalar >= 0 when concrete.

    An array of coefficients is searched over with ``vmap``, which hands each member a scalar,
    so a concrete array here is a mistake; a traced value is accepted as it is.

    Raises:
      ValueError: a concrete ``value`` that is not a scalar, not a number, not finite, or < 0.
    """
    if is_traced(value):
        return
    arr = np.asarray(value)
    if arr.ndim != 0:
        raise ValueError(
            f"{name} must be a scalar (vmap over an array of coefficients), got shape {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr) or arr < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
