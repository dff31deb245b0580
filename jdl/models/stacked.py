"""The stacked denoising autoencoder's classifier: an `MLP` whose hidden layers start from
pre-trained encoders.

The training that makes it (greedy layer-wise pre-training, then supervised fine-tuning) is in
`jdl.run.pretraining`.
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jdl.hyperparams import check_count
from jdl.models.functional import functional
from jdl.models.mlp import MLP

Params = Any
ApplyFn = Callable[..., jax.Array]

__all__ = ["stacked_classifier"]


def stacked_classifier(
    features: Sequence[int],
    num_classes: int,
    *,
    encoders: Sequence[dict[str, jax.Array]] | None = None,
    rngs: nnx.Rngs,
) -> tuple[ApplyFn, Params]:
    """The fine-tuning network: the encoders stacked, a softmax layer on top.

    y = softmax(W_out h_K + b_out),  h_k = sigmoid(W_k^T h_{k-1} + b_k),  h_0 = x,
    an `MLP` ``(d, n_1, ..., n_K, num_classes)`` with sigmoid hidden units. With ``encoders``
    (from `pretrain_layerwise`) its hidden layers start from the pre-trained W_k, b_k and only
    the output layer is random; without, every layer is random (the baseline).

    Args:
      features: ``(d, n_1, ..., n_K)``, the input and hidden sizes.
      num_classes: the number of classes (size of the softmax layer).
      encoders: K dicts ``{"kernel", "bias"}`` whose shapes match ``features``, or None.
      rngs: PRNG streams of the initialisation.

    Returns:
      ``(apply_fn, params)`` as `jdl.models.functional` returns them; ``apply_fn`` gives the
      logits.

    References:
      Vincent et al., "Stacked denoising autoencoders", JMLR 11 (2010), sec. 3.5.
    """
    features = tuple(features)
    if check_count("num_classes", num_classes) < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    apply_fn, params = functional(
        MLP((*features, num_classes), activation=jax.nn.sigmoid, rngs=rngs)
    )
    if encoders is None:
        return apply_fn, params
    encoders = tuple(encoders)
    if len(encoders) != len(features) - 1:
        raise ValueError(
            f"encoders must hold one layer per hidden size: {len(features) - 1} hidden layers, "
            f"{len(encoders)} encoders"
        )
    layers = dict(params["layers"])
    for k, layer in enumerate(encoders):
        expected = (features[k], features[k + 1])
        if tuple(jnp.shape(layer["kernel"])) != expected or tuple(jnp.shape(layer["bias"])) != (
            expected[1],
        ):
            raise ValueError(
                f"encoder {k} must have kernel {expected} and bias ({expected[1]},), got "
                f"{jnp.shape(layer['kernel'])} and {jnp.shape(layer['bias'])}"
            )
        layers[k] = {"kernel": jnp.asarray(layer["kernel"]), "bias": jnp.asarray(layer["bias"])}
    return apply_fn, {**params, "layers": layers}
