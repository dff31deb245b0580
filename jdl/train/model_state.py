"""Where the stateless and the stateful contracts meet: one loss-and-gradient and one
evaluation for both, chosen by the model state's structure (None or a pytree), never by a
value.

A model without state (``model_state is None``) keeps ``loss_fn(params, batch, key) ->
(loss, aux)`` and ``eval_fn(params, data)``; a model with state (`jdl.types.Variables`,
`jdl.models.stateful`) uses ``loss_fn(params, model_state, batch, key) -> (loss, (aux,
model_state'))`` and ``eval_fn(params, model_state, data)``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from jdl.data import Dataset
from jdl.types import Aux, ModelState, Params

__all__ = ["evaluate", "loss_and_grad"]

GradFn = Callable[
    [Params, ModelState, Dataset, jax.Array], tuple[tuple[jax.Array, Aux, ModelState], Params]
]


def loss_and_grad(loss_fn: Callable, model_state: ModelState) -> GradFn:
    r"""``grad_fn(params, model_state, batch, key) -> ((loss, aux, model_state'), grads)``.

    .. math::
        (L, a, \phi'), g = (\ell(\theta, \phi; B, k), \nabla_\theta \ell(\theta, \phi; B, k)),

    the gradient with respect to the parameters :math:`\theta` only; the model state :math:`\phi`
    (running statistics) is carried, not differentiated. Without state (``model_state`` None,
    a structure known when tracing) ``loss_fn(params, batch, key)`` is called as it always was
    and :math:`\phi' = \phi` = None: the stateless program is unchanged.

    Args:
      loss_fn: a `jdl.types.LossFn`, or a `jdl.types.StatefulLossFn` when ``model_state`` is
        not None.
      model_state: the state's structure (only ``is None`` is looked at).

    References:
      S. Ioffe, C. Szegedy, "Batch Normalization", ICML 2015 (running statistics updated in
      training, used in inference); ``jax.value_and_grad(..., has_aux=True)``.
    """
    grad = jax.value_and_grad(loss_fn, has_aux=True)
    if model_state is None:

        def stateless(params, model_state, batch, key):
            (loss, aux), grads = grad(params, batch, key)
            return (loss, aux, None), grads

        return stateless

    def stateful(params, model_state, batch, key):
        (loss, (aux, new_state)), grads = grad(params, model_state, batch, key)
        return (loss, aux, new_state), grads

    return stateful


def evaluate(
    eval_fn: Callable, params: Params, model_state: ModelState, data: Dataset
) -> dict[str, jax.Array]:
    """``eval_fn(params, data)`` without state, ``eval_fn(params, model_state, data)`` with
    it (evaluation mode: the running statistics)."""
    if model_state is None:
        return eval_fn(params, data)
    return eval_fn(params, model_state, data)
