"""Models with state beyond their parameters (BatchNorm) through the functional boundary.

``stateful(module)`` splits a model into ``apply_fn(params, model_state, x, *, key=None) ->
(y, model_state')`` and its `jdl.types.Variables` ``(params, model_state)``: the parameters are
trained by gradient, the model state (running statistics) is returned updated by every call in
training mode and carried by the train step in ``TrainState.model_state``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import linen, nnx

from jdl.types import ModelState, Params, Variables

__all__ = ["StatefulApplyFn", "stateful"]

StatefulApplyFn = Callable[..., tuple[jax.Array, ModelState]]
"""``apply_fn(params, model_state, x, *, key=None) -> (y, model_state')``."""

# The model state: every NNX variable that is neither trained (Param) nor a random stream's
# state (held fixed, re-seeded from the step's key) nor an intermediate value (sown per call).
_STATE = nnx.Not(nnx.Any(nnx.Param, nnx.RngState, nnx.Intermediate))


def stateful(
    module: nnx.Module | linen.Module,
    key: jax.Array | None = None,
    x: jax.Array | None = None,
    *,
    deterministic_arg: str | None = None,
) -> tuple[StatefulApplyFn, Variables]:
    r"""Splits a model with state (BatchNorm) into a pure ``apply_fn`` and its variables.

    .. math::
        (y, \phi') = f(x; \theta, \phi, k) \;\text{(training mode: batch statistics, }
        \phi' = \text{momentum}\cdot\phi + (1 - \text{momentum})\cdot\text{stats}(B)),
        \qquad
        (y, \phi) = f(x; \theta, \phi) \;\text{(evaluation mode: running statistics)},

    where :math:`\theta` are the parameters (trained by gradient) and :math:`\phi` the model
    state: every variable that is not a parameter (``nnx.BatchStat`` and other
    ``nnx.Variable``\ s; Linen's collections other than ``"params"``, e.g. ``"batch_stats"``).
    With a key :math:`k` the model runs in training mode (``deterministic=False``,
    ``use_running_average=False``; dropout draws from :math:`k` as in `functional`) and returns
    its updated state; without one it runs in evaluation mode and returns :math:`\phi`
    unchanged.

    The loss and evaluation functions of such a model take the state after the parameters
    (`jdl.types.StatefulLossFn`, `jdl.types.StatefulEvalFn`; `jdl.train.classification` with
    ``stateful=True`` builds them); `jdl.run.fit` takes the `jdl.types.Variables` in place of the
    parameters, and a search's ``init_fn`` returns them.

    Args:
      module: a Flax NNX module, or a Linen module (then ``key`` and ``x`` are required).
      key: Linen only: the PRNG key of ``module.init``.
      x: Linen only: an example input (its shape fixes the variables' shapes).
      deterministic_arg: Linen only: the keyword argument of the module's ``__call__`` that
        selects evaluation mode (e.g. ``"use_running_average"`` or ``"deterministic"``); it is
        passed ``key is None``.

    Returns:
      ``(apply_fn, variables)``: ``apply_fn(params, model_state, x, *, key=None) -> (y,
      model_state')`` is pure; ``variables`` is ``Variables(params, model_state)``, nested
      dicts of arrays (copies: changing them does not change ``module``).

    Raises:
      TypeError: ``module`` is neither an NNX nor a Linen module, a Linen module without
        ``key`` and ``x``, or a model without state (use `functional` / `from_linen`).

    Example::

      >>> apply_fn, variables = stateful(ConvNet((40, 1), (8,), 10, batch_norm=True,
      ...                                        rngs=nnx.Rngs(0)))
      >>> y, new_state = apply_fn(*variables, jnp.ones((3, 40)), key=jax.random.key(1))

    References:
      S. Ioffe, C. Szegedy, "Batch Normalization: Accelerating Deep Network Training by
      Reducing Internal Covariate Shift", ICML 2015; Flax NNX ``nnx.split`` / ``nnx.merge``;
      Flax Linen ``Module.apply(..., mutable=["batch_stats"])``.
    """
    if isinstance(module, linen.Module):
        if key is None or x is None:
            raise TypeError("stateful of a Linen module needs key and x, as from_linen does")
        return _linen(module, key, x, deterministic_arg)
    if not isinstance(module, nnx.Module):
        raise TypeError(
            f"stateful expects a flax.nnx.Module or a flax.linen.Module, got "
            f"{type(module).__name__}"
        )
    train_view = nnx.view(
        module, deterministic=False, use_running_average=False, raise_if_not_found=False
    )
    eval_view = nnx.view(
        module, deterministic=True, use_running_average=True, raise_if_not_found=False
    )
    train_graphdef, params, model_state, rest = nnx.split(train_view, nnx.Param, _STATE, ...)
    eval_graphdef, _, _, _ = nnx.split(eval_view, nnx.Param, _STATE, ...)
    model_state = nnx.to_pure_dict(model_state)
    if not jax.tree.leaves(model_state):
        raise TypeError(
            f"{type(module).__name__} has no state beyond its parameters: use functional"
        )
    takes_rngs = "rngs" in inspect.signature(module.__call__).parameters
    streams = sorted(
        {node.tag for _, node in nnx.iter_graph(module) if isinstance(node, nnx.RngStream)}
    )

    def apply_fn(
        params: Params, model_state: ModelState, x: jax.Array, *, key: jax.Array | None = None
    ) -> tuple[jax.Array, ModelState]:
        if key is None:
            return nnx.merge(eval_graphdef, params, model_state, rest)(x), model_state
        model = nnx.merge(train_graphdef, params, model_state, rest)
        if takes_rngs:
            y = model(x, rngs=nnx.Rngs(key))
        else:
            if streams:
                keys = {tag: jax.random.fold_in(key, i) for i, tag in enumerate(streams)}
                nnx.reseed(model, **keys)
            y = model(x)
        return y, nnx.to_pure_dict(nnx.state(model, _STATE))

    copy = jax.tree.map(jnp.array, (nnx.to_pure_dict(params), model_state))
    return apply_fn, Variables(*copy)


def _linen(
    module: linen.Module, key: jax.Array, x: jax.Array, deterministic_arg: str | None
) -> tuple[StatefulApplyFn, Variables]:
    """`stateful` of a Linen module: ``module.apply`` with the non-params collections mutable
    in training mode."""
    mode = {} if deterministic_arg is None else {deterministic_arg: True}
    variables = dict(module.init({"params": key, "dropout": key}, x, **mode))
    params = variables.pop("params")
    if not jax.tree.leaves(variables):
        raise TypeError(f"{type(module).__name__} has only a 'params' collection: use from_linen")
    collections = sorted(variables)

    def apply_fn(
        params: Params, model_state: ModelState, x: jax.Array, *, key: jax.Array | None = None
    ) -> tuple[jax.Array, ModelState]:
        mode = {} if deterministic_arg is None else {deterministic_arg: key is None}
        if key is None:
            return module.apply({"params": params, **model_state}, x, **mode), model_state
        y, new = module.apply(
            {"params": params, **model_state},
            x,
            rngs={"dropout": key},
            mutable=collections,
            **mode,
        )
        return y, dict(new)

    return apply_fn, Variables(params, variables)
