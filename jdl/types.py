"""The shapes of the functions and trees that jdl passes around, defined once.

A run is made of a loss function, an evaluation function and an optimizer over a pytree of
parameters; a population maps the same functions over named hyper-parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from jdl.data import Dataset

__all__ = ["Aux", "EvalFn", "HParams", "LossFn", "Metrics", "Params"]

Params = Any
"""A pytree of arrays: the model's parameters theta."""

Aux = dict[str, jax.Array]
"""The auxiliary scalars a loss function returns beside the loss."""

LossFn = Callable[[Params, Dataset, jax.Array], tuple[jax.Array, Aux]]
"""``loss_fn(params, batch, key) -> (loss, aux)``: a scalar loss and a dict of scalars; ``key``
is the step's PRNG key (dropout and other noise)."""

EvalFn = Callable[[Params, Dataset], dict[str, jax.Array]]
"""``eval_fn(params, data) -> dict`` of scalars containing ``"loss"``, the monitored value."""

HParams = dict[str, Any]
"""Hyper-parameters by name: Python floats, or arrays (traced under ``vmap``)."""

Metrics = dict[str, jax.Array]
"""A chunk's metrics: ``"train_loss"`` and ``"val_" + k`` for each entry k of ``eval_fn``."""
