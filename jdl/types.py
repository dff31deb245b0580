"""The shapes of the functions and trees that jdl passes around, defined once.

A run is made of a loss function, an evaluation function and an optimizer over a pytree of
parameters; a population maps the same functions over named hyper-parameters. A model with
state beyond its parameters (BatchNorm's running statistics) adds a second pytree, the model
state, that the functions take after the parameters and the loss returns updated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from jdl.data import Dataset

__all__ = [
    "Aux",
    "EvalFn",
    "HParams",
    "LossFn",
    "Metrics",
    "ModelState",
    "Params",
    "StatefulEvalFn",
    "StatefulLossFn",
    "Variables",
]

Params = Any
"""A pytree of arrays: the model's parameters theta."""

ModelState = Any
"""A pytree of arrays: the model's variables that are not trained by gradient (BatchNorm's
running means and variances); None for a model without any."""

Aux = dict[str, jax.Array]
"""The auxiliary scalars a loss function returns beside the loss."""

LossFn = Callable[[Params, Dataset, jax.Array], tuple[jax.Array, Aux]]
"""``loss_fn(params, batch, key) -> (loss, aux)``: a scalar loss and a dict of scalars; ``key``
is the step's PRNG key (dropout and other noise)."""

EvalFn = Callable[[Params, Dataset], dict[str, jax.Array]]
"""``eval_fn(params, data) -> dict`` of scalars containing ``"loss"``, the monitored value."""

StatefulLossFn = Callable[
    [Params, ModelState, Dataset, jax.Array], tuple[jax.Array, tuple[Aux, ModelState]]
]
"""``loss_fn(params, model_state, batch, key) -> (loss, (aux, new_model_state))``: the loss of a
model with state, in training mode; the new state (the batch statistics folded into the running
ones) is carried to the next step. Differentiated with respect to ``params`` only."""

StatefulEvalFn = Callable[[Params, ModelState, Dataset], dict[str, jax.Array]]
"""``eval_fn(params, model_state, data) -> dict`` of scalars containing ``"loss"``, in
evaluation mode (BatchNorm normalises with the running statistics)."""

HParams = dict[str, Any]
"""Hyper-parameters by name: Python floats, or arrays (traced under ``vmap``)."""

Metrics = dict[str, jax.Array]
"""A chunk's metrics: ``"train_loss"`` and ``"val_" + k`` for each entry k of ``eval_fn``."""


class Variables(NamedTuple):
    """A stateful model's variables: what `jdl.models.stateful` returns, and what `jdl.run.fit`
    and a search's ``init_fn`` take in place of the parameters alone.

    Its type, not its contents, says that the model has state: the loss and evaluation
    functions then follow the stateful contract (`StatefulLossFn`, `StatefulEvalFn`).

    Attributes:
      params: the parameters theta (trained by gradient).
      model_state: the rest of the model's variables (running statistics), a pytree of arrays.
    """

    params: Params
    model_state: ModelState
