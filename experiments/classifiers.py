"""The classifiers of the experiments: the MLP, and the CNN of MNIST-1D and digits, as
``init_fn``, ``loss_fn`` and ``eval_fn`` of one shape for `jdl.search.Search`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
from flax import nnx

from experiments.cli import CNN_KERNELS, DATA_SHAPES
from jdl.models import MLP, ConvNet, functional
from jdl.train import classification
from jdl.types import LossFn


def cnn(
    data: str,
    num_classes: int,
    channels: int,
    *,
    hidden: Sequence[int] = (),
    batch_norm: bool = False,
) -> Callable[[nnx.Rngs], ConvNet]:
    """The experiments' CNN for ``data`` ("mnist1d" or "digits") as a function of its PRNG
    streams: `jdl.models.ConvNet` with three stride-2 convolutions of ``channels`` channels
    (padding 1, GELU units), then a dense head of ``hidden`` layers and ``num_classes`` outputs.

    On MNIST-1D the kernels are 5, 3, 3 over the 40 positions (40 -> 19 -> 10 -> 5): the
    reference CNN of Greydanus 2020, with ``channels`` instead of 25 and a linear head when
    ``hidden`` is empty. On digits they are 3 x 3 over the 8 x 8 images (8 -> 4 -> 2 -> 1 per
    axis). ``batch_norm`` puts BatchNorm after each convolution (a model with state).
    """
    return lambda rngs: ConvNet(
        DATA_SHAPES[data],
        (channels,) * 3,
        num_classes,
        kernel_size=CNN_KERNELS[data],
        strides=2,
        padding=1,
        hidden=hidden,
        activation=jax.nn.gelu,
        batch_norm=batch_norm,
        rngs=rngs,
    )


def classifier(
    model: Callable[[nnx.Rngs], nnx.Module],
) -> tuple[Callable[[jax.Array], Any], LossFn, Callable[..., dict[str, jax.Array]]]:
    """``(init_fn, loss_fn, eval_fn)`` of ``model`` (a module without state, as a function of
    its PRNG streams) for `jdl.search.Search`: ``init_fn(key)`` draws the parameters of
    ``model(nnx.Rngs(key))``; ``loss_fn`` and ``eval_fn`` are `jdl.train.classification`'s
    softmax cross-entropy and {"loss", "accuracy"}."""
    apply_fn, _ = functional(model(nnx.Rngs(0)))

    def init_fn(key: jax.Array) -> Any:
        return functional(model(nnx.Rngs(key)))[1]

    return init_fn, *classification(apply_fn)


def mlp_classifier(
    features: Sequence[int],
) -> tuple[Callable[[jax.Array], Any], LossFn, Callable[..., dict[str, jax.Array]]]:
    """`classifier` of `jdl.models.MLP` ``features`` (input, hidden..., classes)."""
    return classifier(lambda rngs: MLP(features, rngs=rngs))
