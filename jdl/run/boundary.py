"""Checks of the user's data and functions at a run's boundary (``fit`` and a search alike),
before anything compiles.

``jax.eval_shape`` runs ``loss_fn`` (and its gradient) on one batch's shapes and ``eval_fn`` on
the validation data's: nothing is computed or compiled, and a function that does not fit the data
fails with a message that names it and its inputs, the original error on one line after it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jdl.data import Dataset
from jdl.hyperparams import is_traced
from jdl.train.step import step_key
from jdl.types import EvalFn, LossFn, ModelState, Params, Variables


def _describe(a: object) -> str:
    """``float32[8,4]`` for an array (or a shape-dtype struct), the type's name otherwise."""
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return f"{jnp.dtype(a.dtype).name}[{','.join(map(str, a.shape))}]"
    if isinstance(a, int | float | bool):
        return f"a Python {type(a).__name__}"
    if isinstance(a, tuple | list):
        return f"a {type(a).__name__} of {len(a)}"
    return type(a).__name__


def _returned(a: object) -> str:
    """What a function returned, for an error message: ``an array float32[8]``, ``a tuple of 3``."""
    return f"an array {_describe(a)}" if hasattr(a, "shape") else _describe(a)


def _describe_data(data: Dataset) -> str:
    return f"x {_describe(data.x)}, y {_describe(data.y)}"


def _describe_params(params: Params, limit: int = 4) -> str:
    """The parameters' first ``limit`` leaves as ``{path: dtype[shape], ...}``."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    items = [
        f"{jax.tree_util.keystr(path, simple=True, separator='/') or '.'}: {_describe(leaf)}"
        for path, leaf in leaves[:limit]
    ]
    if len(leaves) > limit:
        items.append(f"... {len(leaves) - limit} more")
    return "{" + ", ".join(items) + "}"


def _boundary_error(err: Exception, context: str) -> Exception:
    """The boundary's error for ``err`` raised by a user function: ``context`` first, then the
    original message on one line; a TypeError stays a TypeError, the rest become ValueErrors."""
    text = " ".join(str(err).split()) or "(no message)"
    if len(text) > 500:
        text = text[:497] + "..."
    kind = TypeError if isinstance(err, TypeError) else ValueError
    return kind(f"{context}: {type(err).__name__}: {text}")


def check_evaluation(evaluation: object) -> None:
    """``eval_fn``'s result: a dict of scalars containing ``"loss"``."""
    if not isinstance(evaluation, dict) or "loss" not in evaluation:
        raise ValueError(
            "eval_fn must return a dict of scalars containing 'loss' (the monitored value), got "
            + (
                f"a dict with keys {sorted(map(str, evaluation))}"
                if isinstance(evaluation, dict)
                else _describe(evaluation)
            )
        )
    bad = [f"{k!r}: {_describe(v)}" for k, v in evaluation.items() if np.shape(v) != ()]
    if bad:
        raise ValueError(
            "eval_fn must return a dict of scalars containing 'loss', got non-scalar "
            f"{', '.join(bad)} (reduce them over the validation set, e.g. with .mean())"
        )


def check_data(train: Dataset, val: Dataset, batch_size: int) -> None:
    """Both sets: arrays with an example axis, x and y of one length; matching feature shapes
    and label kinds; ``batch_size`` at most the training examples."""
    for name, data in (("train", train), ("val", val)):
        for field, a in (("x", data.x), ("y", data.y)):
            if not (hasattr(a, "shape") and hasattr(a, "dtype")):
                raise TypeError(f"{name}.{field} must be an array, got {type(a).__name__}")
            if len(a.shape) == 0:
                raise ValueError(f"{name}.{field} must have a leading example axis, got a scalar")
        if data.x.shape[0] != data.y.shape[0]:
            raise ValueError(
                f"{name}: x has {data.x.shape[0]} examples but y has {data.y.shape[0]} "
                f"({_describe_data(data)})"
            )
    if train.x.shape[1:] != val.x.shape[1:]:
        raise ValueError(
            f"train and val inputs differ in shape: train x {_describe(train.x)}, val x "
            f"{_describe(val.x)}; every example needs the same shape after the example axis"
        )
    kinds = {name: _kind(d.y.dtype) for name, d in (("train", train), ("val", val))}
    if kinds["train"] != kinds["val"]:
        raise ValueError(
            f"train and val labels differ in kind: train y {_describe(train.y)} ("
            f"{kinds['train']}), val y {_describe(val.y)} ({kinds['val']})"
        )
    for name, data in (("train", train), ("val", val)):
        check_finite(name, data)
    n = train.x.shape[0]
    if batch_size > n:
        raise ValueError(
            f"batch_size must be between 1 and the {n} training examples, got {batch_size}"
        )


def check_finite(name: str, data: Dataset) -> None:
    """Concrete floating-point inputs and targets hold no NaN or inf (a `Dataset` built directly
    skips `jdl.data.dataset`'s checks; a NaN input would pass for a diverged run)."""
    for field, a in (("x", data.x), ("y", data.y)):
        if is_traced(a) or not jnp.issubdtype(a.dtype, jnp.inexact):
            continue
        if _on_host(a):  # counted by numpy: nothing to compile
            bad = a.size - int(np.count_nonzero(np.isfinite(np.asarray(a))))
        else:
            bad = int(jnp.size(a) - jnp.count_nonzero(jnp.isfinite(a)))
        if bad:
            raise ValueError(f"{name}.{field} has {bad} non-finite values (NaN or inf)")


def _on_host(a: jax.typing.ArrayLike) -> bool:
    """A NumPy array, or a JAX array wholly in this process's CPU memory."""
    if not isinstance(a, jax.Array):
        return True
    return a.is_fully_addressable and all(d.platform == "cpu" for d in a.devices())


def check_labels_of(
    fns: tuple[object, ...],
    params: Params,
    train: Dataset,
    val: Dataset,
    model_state: ModelState = None,
) -> None:
    """The concrete labels against the model's outputs, where an objective knows how: the first
    of ``fns`` with a ``check_labels(params, data, name)`` method (`jdl.train.classification`;
    a stateful one is given ``Variables(params, model_state)``)."""
    if any(is_traced(d.y) or not isinstance(d.y, jax.Array | np.ndarray) for d in (train, val)):
        return
    if model_state is not None:
        params = Variables(params, model_state)
    for fn in fns:
        check = getattr(fn, "check_labels", None)
        if callable(check):
            check(params, train, "train labels")
            check(params, val, "val labels")
            return


def _kind(dtype: jax.typing.DTypeLike) -> str:
    for kind, generic in (
        ("bool", np.bool_),
        ("integer", np.integer),
        ("floating", np.floating),
        ("complex", np.complexfloating),
    ):
        if jnp.issubdtype(dtype, generic):
            return kind
    return str(np.dtype(dtype))


def check_functions(
    loss_fn: LossFn,
    eval_fn: EvalFn,
    params: Params,
    key: jax.Array,
    train: Dataset,
    val: Dataset,
    batch_size: int,
    model_state: ModelState = None,
) -> None:
    """Runs ``loss_fn`` (and its gradient) on one batch's shapes and ``eval_fn`` on the
    validation data's with ``jax.eval_shape``: nothing is computed or compiled, and a function
    that does not fit the data fails here with a message naming it and its inputs.

    Args:
      loss_fn, eval_fn: the run's functions (a search's for one configuration).
      params: the initial parameters (arrays or ``jax.ShapeDtypeStruct``s) of one member.
      key: the run's PRNG key (or its shape).
      train, val: the data sets; batch_size: the mini-batch size.
      model_state: a stateful model's state (None: none); the functions are then checked
        against the stateful contract (`jdl.types.StatefulLossFn`, `jdl.types.StatefulEvalFn`),
        and the state the loss returns must have the structure and shapes of this one.
    """
    # The dtypes as compiled code sees them (float64 is float32 unless x64 is enabled).
    batch = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(
            (batch_size, *a.shape[1:]), jax.dtypes.canonicalize_dtype(a.dtype)
        ),
        train,
    )
    check_labels_of((loss_fn, eval_fn), params, train, val, model_state)
    val = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, jax.dtypes.canonicalize_dtype(a.dtype)), val
    )
    params = jax.eval_shape(lambda p: p, params)
    key = jax.eval_shape(step_key, key, 0)
    summary = _describe_params(params)
    on = f"a batch of {_describe_data(batch)} and params {summary}"
    call, loss_of, eval_of = "loss_fn(params, batch, key)", loss_fn, eval_fn
    if model_state is not None:
        model_state = jax.eval_shape(lambda s: s, model_state)
        on += f" and model_state {_describe_params(model_state)}"
        call = "loss_fn(params, model_state, batch, key)"
        loss_of, eval_of = _stateless_view(loss_fn, model_state, on), _stateless_eval(eval_fn)
    else:
        loss_of = lambda p, b, k, s: loss_fn(p, b, k)  # noqa: E731
        eval_of = lambda p, d, s: eval_fn(p, d)  # noqa: E731
    try:
        out = jax.eval_shape(loss_of, params, batch, key, model_state)
    except _StatefulLossError as err:
        raise TypeError(str(err)) from None
    except Exception as err:
        raise _boundary_error(err, f"{call} failed on {on}") from err
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise TypeError(
            "loss_fn must return a pair (loss, aux) of a scalar loss and a dict aux, got "
            f"{_returned(out)} on {on}"
        )
    loss, aux = out
    if np.shape(loss) != ():
        raise ValueError(
            f"loss_fn must return a scalar loss, got {_describe(loss)} on {on} (reduce it over "
            "the batch, e.g. with .mean())"
        )
    if not jnp.issubdtype(getattr(loss, "dtype", type(loss)), jnp.floating):
        raise TypeError(
            f"loss_fn must return a floating-point loss (it is differentiated), got "
            f"{_describe(loss)}"
        )
    if not isinstance(aux, dict):
        raise TypeError(
            f"loss_fn must return a dict aux (return loss, {{}} when there is none), got "
            f"{_describe(aux)}"
        )
    try:
        grad = jax.value_and_grad(loss_of, has_aux=True)
        jax.eval_shape(grad, params, batch, key, model_state)
    except Exception as err:
        raise _boundary_error(
            err, f"loss_fn cannot be differentiated with respect to params {summary}"
        ) from err
    call = "eval_fn(params, val)" if model_state is None else "eval_fn(params, model_state, val)"
    try:
        evaluation = jax.eval_shape(eval_of, params, val, model_state)
    except Exception as err:
        raise _boundary_error(
            err, f"{call} failed on val {_describe_data(val)} and params {summary}"
        ) from err
    check_evaluation(evaluation)


class _StatefulLossError(TypeError):
    """A stateful loss that does not return ``(loss, (aux, model_state))`` of the same state."""


def _stateless_view(loss_fn: LossFn, model_state: ModelState, on: str) -> LossFn:
    """``loss_fn(params, model_state, batch, key)`` seen as ``(params, batch, key, state) ->
    (loss, aux)`` for the checks, its returned state checked against ``model_state``'s shapes."""

    def view(params: Params, batch: Dataset, key: jax.Array, state: ModelState) -> tuple:
        out = loss_fn(params, state, batch, key)
        if not (
            isinstance(out, tuple | list)
            and len(out) == 2
            and isinstance(out[1], tuple | list)
            and len(out[1]) == 2
        ):
            raise _StatefulLossError(
                "a stateful loss_fn must return (loss, (aux, model_state)), got "
                f"{_returned(out)} on {on}"
            )
        loss, (aux, new_state) = out
        shapes = jax.tree.map(lambda a: (tuple(np.shape(a)), jnp.dtype(a.dtype)), model_state)
        try:
            same = jax.tree.map(lambda a: (tuple(np.shape(a)), jnp.dtype(a.dtype)), new_state)
        except AttributeError:
            same = None
        if jax.tree.structure(new_state) != jax.tree.structure(model_state) or same != shapes:
            raise _StatefulLossError(
                "a stateful loss_fn must return the model state with the structure, shapes and "
                f"dtypes it was given ({_describe_params(model_state)}), got "
                f"{_describe_params(new_state)}"
            )
        return loss, aux

    return view


def _stateless_eval(eval_fn: EvalFn) -> EvalFn:
    return lambda params, data, state: eval_fn(params, state, data)
