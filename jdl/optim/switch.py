r"""The optimizer family as a categorical hyper-parameter: one transformation that runs the
family of a (possibly traced) index, so one compiled program searches family x learning rate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

__all__ = ["SwitchState", "switch"]


class SwitchState(NamedTuple):
    """The state of every family, so that any index finds its own.

    Attributes:
      count: updates applied, shape=(), int32.
      inner: each family's optimizer state, in the order of the families.
    """

    count: jax.Array  # shape=(), int32
    inner: tuple[optax.OptState, ...]


def switch(
    transforms: Sequence[optax.GradientTransformation], index: ArrayLike
) -> optax.GradientTransformation:
    r"""Runs family ``index`` of ``transforms`` with ``lax.switch``:

    .. math:: (u_t, s^{(i)}_{t+1}) = \text{transforms}[i].\text{update}(g_t, s^{(i)}_t,
        \theta_t), \qquad s^{(j)}_{t+1} = s^{(j)}_t \ (j \ne i),

    with :math:`i` = ``index`` (rounded to an int, clipped to the families). The state holds
    every family's state, so ``index`` may be traced: under ``vmap`` a population whose
    members have different families trains as one program (each member's update is that of
    its own family; the others' states stay at their initial values).

    Args:
      transforms: the families, e.g. ``[sgd(lr), momentum(lr), adam(lr)]`` (their own
        hyper-parameters may be traced too).
      index: which family, a Python int or an array (a population's hyper-parameter).

    Returns:
      An ``optax.GradientTransformation`` with a `SwitchState`.

    Raises:
      ValueError: no family, or a concrete index outside them.

    Example::

      >>> tx = lambda hp: switch([sgd(hp["learning_rate"]), momentum(hp["learning_rate"]),
      ...                         adam(hp["learning_rate"])], hp["family"])

    References:
      JAX ``lax.switch``; optax ``GradientTransformation`` protocol.
    """
    transforms = tuple(transforms)
    if not transforms:
        raise ValueError("switch needs at least one optimizer family")
    if isinstance(index, int | float) and not 0 <= index < len(transforms):
        raise ValueError(f"index must be in [0, {len(transforms)}), got {index!r}")

    def init(params: optax.Params) -> SwitchState:
        return SwitchState(jnp.zeros((), jnp.int32), tuple(t.init(params) for t in transforms))

    def update(
        grads: optax.Updates, state: SwitchState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, SwitchState]:
        def branch(i: int):
            def run(g, inner, p):
                updates, new = transforms[i].update(g, inner[i], p)
                return updates, (*inner[:i], new, *inner[i + 1 :])

            return run

        i = jnp.clip(jnp.round(jnp.asarray(index)).astype(jnp.int32), 0, len(transforms) - 1)
        branches = [branch(i_) for i_ in range(len(transforms))]
        updates, inner = jax.lax.switch(i, branches, grads, state.inner, params)
        return updates, SwitchState(state.count + 1, inner)

    return optax.GradientTransformation(init, update)
