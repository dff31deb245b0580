"""Multi-layer perceptron with optional dropout, a Flax NNX module."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike

from jdl.hyperparams import check_interval
from jdl.models.width import width_masks


class MLP(nnx.Module):
    r"""Multi-layer perceptron: affine layers with a non-linearity between them.

    With ``features = (d_0, d_1, ..., d_L)``:

    .. math::
        h_0 = x, \qquad h_l = \text{drop}(s(W_l h_{l-1} + b_l)) \;(l < L), \qquad
        y = W_L h_{L-1} + b_L,

    a linear output (logits or regression targets). Dropout (rate :math:`p`) zeroes each
    hidden unit with probability :math:`p` and scales the others by :math:`1/(1-p)` in
    training mode; it is the identity in evaluation mode.

    Args:
      features: layer sizes including the input size, e.g. ``(64, 128, 128, 10)``.
      activation: the hidden non-linearity s.
      dropout_rate: p in [0, 1) after each hidden layer (0: no dropout layers).
      rngs: PRNG streams: ``params`` for the initialisation (LeCun normal kernels, zero
        biases) and ``dropout`` for the masks when called without an ``rngs`` argument.

    Example::

      >>> mlp = MLP((64, 32, 10), rngs=nnx.Rngs(0))
      >>> mlp(jnp.zeros((5, 64))).shape
      (5, 10)

    References:
      N. Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
      Overfitting", JMLR 15 (2014).
    """

    def __init__(
        self,
        features: Sequence[int],
        *,
        activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
        dropout_rate: float = 0.0,
        rngs: nnx.Rngs,
    ):
        features = tuple(features)
        if len(features) < 2 or not all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in features
        ):
            raise ValueError(
                "features must be at least two positive ints (input size, ..., output size), "
                f"got {features!r}"
            )
        if not callable(activation):
            raise TypeError(f"activation must be callable, got {activation!r}")
        check_interval("dropout_rate", dropout_rate, 0.0, 1.0)
        self.activation = activation
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(features)]
        )
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs) if dropout_rate > 0 else None

    def __call__(
        self,
        x: jax.Array,
        *,
        rngs: nnx.Rngs | None = None,
        widths: Sequence[ArrayLike] | None = None,
        dropout_rate: ArrayLike | None = None,
    ) -> jax.Array:
        r"""The output y for inputs x of shape (..., d_0).

        Args:
          x: inputs of shape (..., d_0).
          rngs: overrides the dropout stream.
          widths: hidden widths :math:`w_l \le d_l` of a narrower network inside this one
            (width by masking, `jdl.models.width`): the units beyond them output 0. Ints or
            traced scalars, so that the widths can be hyper-parameters of a population.
          dropout_rate: p for this call instead of the constructor's, possibly traced (a
            hyper-parameter of a population); applied only when ``rngs`` is given (training
            mode, as `jdl.models.functional` calls it with a key), with the masks
            ``nnx.Dropout`` would draw from ``rngs``.
        """
        if x.ndim < 1 or x.shape[-1] != self.layers[0].in_features:
            raise ValueError(
                f"MLP expects inputs of shape (..., {self.layers[0].in_features}), "
                f"got {tuple(x.shape)}"
            )
        hidden = self.layers[:-1]
        masks = None
        if widths is not None:
            masks = width_masks([layer.out_features for layer in hidden], widths)
        for i, layer in enumerate(hidden):
            x = self.activation(layer(x))
            if masks is not None:
                x = jnp.where(masks[i], x, 0.0)
            if dropout_rate is not None:
                x = x if rngs is None else dropout(x, dropout_rate, rngs["dropout"]())
            elif self.dropout is not None:
                x = self.dropout(x, rngs=rngs)
        return self.layers[-1](x)


def dropout(x: jax.Array, rate: ArrayLike, key: jax.Array) -> jax.Array:
    r"""Dropout whose rate may be traced: :math:`\tilde x = x \odot z / (1 - p)`,
    :math:`z_j \sim \text{Bernoulli}(1 - p)`, with the mask ``nnx.Dropout`` draws from
    ``key`` (the same result for a concrete p).

    Raises:
      ValueError: a concrete rate outside [0, 1).
    """
    check_interval("dropout_rate", rate, 0.0, 1.0)
    keep = 1.0 - (rate if isinstance(rate, int | float) else jnp.asarray(rate, x.dtype))
    mask = jax.random.bernoulli(key, p=keep, shape=x.shape)
    return jax.lax.select(mask, x / keep, jnp.zeros_like(x))
