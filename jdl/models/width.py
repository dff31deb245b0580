r"""Width by masking: MLPs of every hidden width inside one network of the largest width.

A population whose members differ in their hidden widths :math:`w_l \le d_l` compiles one
program at the largest widths :math:`d_l`; member h masks the units beyond its own:

.. math::
    m_{l,j} = [\, j < w_l \,], \qquad
    h_l = m_l \odot s(W_l h_{l-1} + b_l), \qquad y = W_L h_{L-1} + b_L,

and starts from parameters restricted to its widths,

.. math::
    W_l \leftarrow \sqrt{d_{l-1} / w_{l-1}} \; (m_{l-1} m_l^\top) \odot W_l, \qquad
    b_l \leftarrow m_l \odot b_l,

(:math:`m_0 = 1`, :math:`w_0 = d_0`; :math:`m_L = 1`). The kept block of a LeCun-normal
kernel drawn for fan-in :math:`d_{l-1}` is rescaled to the law of one drawn for fan-in
:math:`w_{l-1}`, so the member starts as a network of widths :math:`w` would (in law); the
masked units output 0, so the loss, and hence every gradient, is that of the narrow network,
and the weights beyond the widths get zero gradients and stay 0 under any optimizer that maps
a zero gradient and a zero weight to a zero update (SGD, momentum, Adam, AdamW, ...). Evaluated
without the masks, the restricted network still computes the narrow one (its masked units
have zero outgoing weights).

References:
  J. Yu, L. Yang, N. Xu, J. Yang, T. Huang, "Slimmable Neural Networks", ICLR 2019 (narrower
  networks as the leading units of a wide one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jdl.hyperparams import is_traced
from jdl.types import Params

__all__ = ["restrict_width", "width_masks"]


def width_masks(sizes: Sequence[int], widths: Sequence[ArrayLike]) -> list[jax.Array]:
    """The masks :math:`m_l = [j < w_l]` of hidden layers of sizes ``sizes`` (the largest
    widths :math:`d_l`) for the widths ``widths`` (ints or traced scalars)."""
    if len(widths) != len(sizes):
        raise ValueError(f"expected {len(sizes)} hidden widths, got {len(widths)}")
    for size, width in zip(sizes, widths, strict=True):
        _check_width(width, size)
    return [jnp.arange(size) < width for size, width in zip(sizes, widths, strict=True)]


def restrict_width(params: Params, widths: Sequence[ArrayLike]) -> Params:
    r"""`jdl.models.MLP`'s parameters ``params`` (``{"layers": {l: {"kernel", "bias"}}}``) of
    the largest widths restricted to the hidden widths ``widths`` (ints or traced scalars): the
    weights of masked units set to 0 and each kept kernel block rescaled by
    :math:`\sqrt{d_{l-1}/w_{l-1}}` (see the module's docstring).

    Use it as `jdl.search.Search`'s ``init_member`` with the MLP called with the same
    ``widths``: ``init_member=lambda p, hp: restrict_width(p, (hp["width"],))``.

    Raises:
      ValueError: the number of widths is not the number of hidden layers, or a concrete
        width is not an integer in [1, d_l].
    """
    layers = params["layers"]
    sizes = [layers[i]["kernel"].shape[1] for i in range(len(layers) - 1)]
    masks = width_masks(sizes, widths)
    restricted = {}
    for i in range(len(layers)):
        kernel, bias = layers[i]["kernel"], layers[i]["bias"]
        if i > 0:  # the fan-in is the previous layer's width
            rows = masks[i - 1][:, None]
            scale = jnp.sqrt(kernel.shape[0] / jnp.asarray(widths[i - 1], kernel.dtype))
            kernel = jnp.where(rows, kernel * scale, 0.0)
        if i < len(layers) - 1:
            kernel = jnp.where(masks[i][None, :], kernel, 0.0)
            bias = jnp.where(masks[i], bias, 0.0)
        restricted[i] = {**layers[i], "kernel": kernel, "bias": bias}
    return {**params, "layers": restricted}


def _check_width(width: ArrayLike, size: int) -> None:
    """A concrete width must be an integer in [1, size]; a traced one is not checked."""
    if is_traced(width):
        return
    value = float(np.asarray(width))
    if not (math.isfinite(value) and value == round(value) and 1 <= value <= size):
        raise ValueError(f"a hidden width must be an integer in [1, {size}], got {width!r}")
