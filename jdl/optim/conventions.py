"""Conventions shared by every building block, and the helpers that implement them.

Each ``scale_by_*`` (:mod:`jdl.optim.momentum_family`, :mod:`jdl.optim.adagrad_family`,
:mod:`jdl.optim.adam_family`) maps the gradient g_t to a direction d_t; the aliases in
:mod:`jdl.optim.aliases` chain it with ``optax.scale_by_learning_rate`` so the parameter update is
``theta_t = theta_{t-1} - eta_t * d_t``. The sign flip lives only there.

* State is a NamedTuple with ``count`` (int32 scalar, the number of updates done) first; every
  other per-parameter buffer has the parameter's shape and dtype.
* Arithmetic happens in at least float32 (:func:`wide`) and the result is cast back to the
  parameter's dtype (:func:`cast_back`): in bfloat16 a decay such as b2 = 0.999 would round to
  exactly 1 (optax issue #1414). Stored in bfloat16, a moving average still only resolves
  relative changes above about 2**-8; keep float32 parameters where that matters.
* Hyper-parameters may be Python floats or JAX arrays (traced under ``vmap``). Concrete values
  are checked at construction (:mod:`jdl.hyperparams`); traced ones are used as they are.

Where optax 0.2.8 differs from the PyTorch reference (Adagrad's eps and initial value, AMSGrad's
maximum, NAdam's momentum schedule) or lacks the method (QHM, QHAdam, AggMo), the block follows
the reference given in its docstring.
"""

from typing import TypeVar

import jax
import jax.numpy as jnp
import optax

State = TypeVar("State")


def wide(x: jax.Array) -> jax.Array:
    """``x`` in at least float32, so that decays close to 1 survive bfloat16 parameters."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def wide_tree(tree: optax.Updates) -> optax.Updates:
    """:func:`wide` on every leaf."""
    return jax.tree.map(wide, tree)


def zeros(params: optax.Params) -> optax.Params:
    """A zero buffer like ``params`` (same shapes and dtypes)."""
    return jax.tree.map(jnp.zeros_like, params)


def initial_count() -> jax.Array:
    """The ``count`` of a fresh state: 0 as an int32 scalar."""
    return jnp.zeros([], jnp.int32)


def cast_back(
    direction: optax.Updates, updates: optax.Updates, new_state: State, state: State
) -> tuple[optax.Updates, State]:
    """The widened direction cast like the gradients, and the new state cast like the old one."""
    return optax.tree.cast_like(direction, updates), optax.tree.cast_like(new_state, state)
