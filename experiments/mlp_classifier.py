"""The MLP classifier of the searches: ``init_fn``, ``loss_fn`` and ``eval_fn`` of one shape."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
from flax import nnx

from jdl.models import MLP, functional
from jdl.train import classification
from jdl.types import LossFn


def mlp_classifier(
    features: Sequence[int],
) -> tuple[Callable[[jax.Array], Any], LossFn, Callable[..., dict[str, jax.Array]]]:
    """``(init_fn, loss_fn, eval_fn)`` of `jdl.models.MLP` ``features`` (input, hidden...,
    classes) for `jdl.search.Search`: ``init_fn(key)`` draws the parameters of the MLP with
    ``nnx.Rngs(key)``; ``loss_fn`` and ``eval_fn`` are `jdl.train.classification`'s softmax
    cross-entropy and {"loss", "accuracy"}."""
    apply_fn, _ = functional(MLP(features, rngs=nnx.Rngs(0)))

    def init_fn(key: jax.Array) -> Any:
        return functional(MLP(features, rngs=nnx.Rngs(key)))[1]

    return init_fn, *classification(apply_fn)
