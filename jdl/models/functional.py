"""The functional boundary: a model becomes ``apply_fn(params, x, *, key=None)`` + params.

Training code (losses, `jdl.train`, `jdl.search`) sees only a pure function and a pytree of
arrays, so it can differentiate, ``jit`` and ``vmap`` it. Flax NNX modules (`functional`),
Linen modules (`from_linen`) and plain functions with a params pytree all fit this shape.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen, nnx

Params = Any
ApplyFn = Callable[..., jax.Array]


def functional(module: nnx.Module) -> tuple[ApplyFn, Params]:
    r"""Splits a Flax NNX module into a pure ``apply_fn`` and its parameters.

    .. math::
        (g, \theta, r) = \text{nnx.split}(\text{module}, \text{Param}, \ldots), \qquad
        \text{apply\_fn}(\theta, x; k) = \text{nnx.merge}(g, \theta, r)(x),

    where :math:`\theta` are the ``nnx.Param`` variables as a nested dict of arrays and
    :math:`r` the rest (RNG streams, constants), held fixed. With a key :math:`k` the module
    runs in training mode (``deterministic=False``: dropout on); the key reaches the module as
    ``rngs=nnx.Rngs(k)`` when its ``__call__`` takes an ``rngs`` argument, and otherwise
    re-seeds the RNG streams the module stores. Without a key it runs in evaluation mode
    (``deterministic=True``), with no randomness.

    Args:
      module: a Flax NNX module without mutable statistics (no ``nnx.BatchStat``: their
        updates would be lost by this pure function; `jdl.models.stateful` carries them).

    Returns:
      ``(apply_fn, params)``: ``apply_fn(params, x, *, key=None, **kwargs) -> y`` is pure (other
      keyword arguments reach the module's ``__call__``, e.g. `jdl.models.MLP`'s ``widths``
      and ``dropout_rate``, which may be traced hyper-parameters); ``params`` is a nested dict
      of arrays (a copy: changing it does not change ``module``).

    Raises:
      TypeError: ``module`` is not an NNX module, or holds ``nnx.BatchStat`` variables.

    Example::

      >>> apply_fn, params = functional(MLP((4, 8, 2), rngs=nnx.Rngs(0)))
      >>> apply_fn(params, jnp.ones((3, 4))).shape
      (3, 2)

    References:
      Flax NNX, "The Functional API" (``nnx.split`` / ``nnx.merge``),
      https://flax.readthedocs.io/en/latest/nnx_basics.html
    """
    if not isinstance(module, nnx.Module):
        raise TypeError(
            f"functional expects a flax.nnx.Module, got {type(module).__name__}; use from_linen "
            "for a Linen module, or write apply_fn(params, x, *, key=None) for a plain function"
        )
    if any(isinstance(v, nnx.BatchStat) for _, v in nnx.iter_graph(module)):
        raise TypeError(
            "functional does not support modules with nnx.BatchStat variables (e.g. BatchNorm): "
            "its apply_fn would drop their updates; use jdl.models.stateful, which returns them"
        )
    train_graphdef, params, rest = nnx.split(
        nnx.view(module, deterministic=False, raise_if_not_found=False), nnx.Param, ...
    )
    eval_graphdef, _, _ = nnx.split(
        nnx.view(module, deterministic=True, raise_if_not_found=False), nnx.Param, ...
    )
    takes_rngs = "rngs" in inspect.signature(module.__call__).parameters
    streams = sorted(
        {node.tag for _, node in nnx.iter_graph(module) if isinstance(node, nnx.RngStream)}
    )

    def apply_fn(
        params: Params, x: jax.Array, *, key: jax.Array | None = None, **kwargs: Any
    ) -> jax.Array:
        if key is None:
            return nnx.merge(eval_graphdef, params, rest)(x, **kwargs)
        model = nnx.merge(train_graphdef, params, rest)
        if takes_rngs:
            return model(x, rngs=nnx.Rngs(key), **kwargs)
        if streams:
            nnx.reseed(model, **{tag: jax.random.fold_in(key, i) for i, tag in enumerate(streams)})
        return model(x, **kwargs)

    return apply_fn, jax.tree.map(jnp.array, nnx.to_pure_dict(params))


def from_linen(
    module: linen.Module,
    key: jax.Array,
    x: jax.Array,
    *,
    deterministic_arg: str | None = None,
) -> tuple[ApplyFn, Params]:
    r"""Initialises a Flax Linen module and returns the same ``(apply_fn, params)`` pair.

    .. math::
        \theta = \text{module.init}(k, x)[\text{"params"}], \qquad
        \text{apply\_fn}(\theta, x; k') = \text{module.apply}(\{\text{"params"}: \theta\}, x,
        \text{rngs}=\{\text{"dropout"}: k'\}).

    Args:
      module: a Linen module with only a ``"params"`` collection.
      key: PRNG key of the initialisation.
      x: an example input (its shape fixes the parameters' shapes).
      deterministic_arg: the name of the module's keyword argument that turns dropout off
        (e.g. ``"deterministic"``); ``apply_fn`` passes it ``key is None``.

    Returns:
      ``(apply_fn, params)`` with ``apply_fn(params, x, *, key=None)``; a key turns on the
      ``"dropout"`` RNG stream.

    Raises:
      TypeError: ``module`` is not a Linen module, or it has collections other than params.

    References:
      Flax Linen ``Module.init`` / ``Module.apply``,
      https://flax-linen.readthedocs.io/en/latest/api_reference/flax.linen/module.html
    """
    if not isinstance(module, linen.Module):
        raise TypeError(f"from_linen expects a flax.linen.Module, got {type(module).__name__}")
    mode = {} if deterministic_arg is None else {deterministic_arg: True}
    variables = module.init({"params": key, "dropout": key}, x, **mode)
    others = sorted(set(variables) - {"params"})
    if others:
        raise TypeError(
            f"from_linen supports modules whose only collection is 'params', got also {others}; "
            "use jdl.models.stateful for a module with state (e.g. batch_stats)"
        )

    def apply_fn(params: Params, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        mode = {} if deterministic_arg is None else {deterministic_arg: key is None}
        rngs = None if key is None else {"dropout": key}
        return module.apply({"params": params}, x, rngs=rngs, **mode)

    return apply_fn, variables["params"]
