"""Stacked denoising autoencoder: greedy layer-wise pre-training, then supervised fine-tuning.

Layer k is a one-hidden-layer denoising autoencoder trained on the clean codes of layer k - 1
(the raw input for k = 1), each with its own corruption level; every stage is one
`jdl.run.fit` run. The decoders are then dropped, a softmax layer is put on top of the
encoders and the whole stack is fine-tuned with the labels (and early stopping), as an
`MLP` whose hidden layers start from the pre-trained encoders.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jdl import augment
from jdl.data import Dataset
from jdl.losses import accuracy, softmax_cross_entropy
from jdl.models.autoencoder import Autoencoder
from jdl.models.autoencoder_losses import denoising_loss, reconstruction_metrics
from jdl.models.functional import functional
from jdl.run.fit import FitResult, fit
from jdl.train import early_stopping

Params = Any
ApplyFn = Callable[..., jax.Array]

__all__ = ["LayerwisePretraining", "fine_tune", "pretrain_layerwise"]

NOISES = {
    "masking": augment.masking_noise,
    "gaussian": augment.gaussian_noise,
    "salt_and_pepper": augment.salt_and_pepper,
}


class LayerwisePretraining(NamedTuple):
    """The result of greedy layer-wise pre-training.

    Attributes:
      encoders: per layer k, the encoder's ``{"kernel": W_k (n_{k-1}, n_k), "bias": b_k}``.
      results: per layer k, the `jdl.run.FitResult` of its denoising autoencoder.
    """

    encoders: tuple[dict[str, jax.Array], ...]
    results: tuple[FitResult, ...]


def _corruption(noise: str, level: float) -> Callable[[jax.Array, jax.Array], jax.Array]:
    if noise == "gaussian":
        return functools.partial(augment.gaussian_noise, sigma=level)
    return functools.partial(NOISES[noise], p=level)


def _check_int(name: str, value: object, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def pretrain_layerwise(
    train_x: jax.Array,
    val_x: jax.Array,
    hidden: Sequence[int],
    *,
    noise_levels: Sequence[float],
    noise: str = "masking",
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    batch_size: int = 64,
    steps: int = 2000,
    eval_every: int = 100,
    patience: int = 500,
    tied: bool = False,
    reconstruction: str = "mse",
    weight_decay: float = 1e-5,
    progress: bool = False,
) -> LayerwisePretraining:
    """Greedy layer-wise pre-training of a stack of denoising autoencoders.

    With h_0 = x and sizes ``hidden = (n_1, ..., n_K)``, stage k trains a denoising
    autoencoder on the clean codes of the stage below, by default the course's model:
        h_k = sigmoid(W_k^T h~_{k-1} + b_k),  r = sigmoid(V_k h_k + c_k),
        min_theta_k  (1/|B|) sum l(h_{k-1}, r) + lambda (||W_k||^2 + ||V_k||^2),
        h~_{k-1} ~ C_{nu_k}(h~ | h_{k-1}),
    with C the corruption ``noise`` at level nu_k (masking or salt-and-pepper probability, or
    Gaussian sigma), l the squared error (``"mse"``, per unit) or the per-unit cross-entropy
    (``"bce"``, the codes lie in [0, 1]), separate encoder and decoder weights W_k and V_k
    (``tied=True``: V_k = W_k^T, counted once in the weight decay). Each stage is a
    `jdl.run.fit` run with early stopping on the validation reconstruction error of a fixed
    corrupted validation set; its
    best parameters give the next stage's input h_k = sigmoid(W_k^T h_{k-1} + b_k) (clean).

    Args:
      train_x: training inputs (n, d) in [0, 1] (no labels are used).
      val_x: validation inputs (m, d) for early stopping.
      hidden: the code sizes n_1, ..., n_K.
      noise_levels: nu_1, ..., nu_K, one corruption level per layer.
      noise: ``"masking"``, ``"gaussian"`` or ``"salt_and_pepper"``.
      optimizer: the optimizer of every stage.
      key: PRNG key; stage k uses ``fold_in(key, k)``.
      batch_size: mini-batch size.
      steps: maximum optimizer steps per stage.
      eval_every: steps between two evaluations.
      patience: early-stopping patience, in optimizer steps.
      tied: decoder kernel W_k^T (tied weights) or a free V_k (the default).
      reconstruction: ``"mse"`` (the default) or ``"bce"``.
      weight_decay: lambda >= 0 of the weight decay on the kernels.
      progress: show a progress bar per stage.

    Returns:
      `LayerwisePretraining` with the K encoders and the K fit results.

    References:
      Bengio, Lamblin, Popovici, Larochelle, "Greedy layer-wise training of deep networks",
      NIPS 2006; Vincent, Larochelle, Lajoie, Bengio, Manzagol, "Stacked denoising
      autoencoders", JMLR 11 (2010), sec. 3.5 and fig. 3.
    """
    hidden = tuple(hidden)
    noise_levels = tuple(noise_levels)
    if not hidden:
        raise ValueError("hidden must hold at least one layer size")
    for n in hidden:
        _check_int("each hidden size", n)
    if len(noise_levels) != len(hidden):
        raise ValueError(
            f"noise_levels must give one level per layer: {len(hidden)} layers, "
            f"{len(noise_levels)} levels"
        )
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {sorted(NOISES)}, got {noise!r}")
    for level in noise_levels:
        high = np.inf if noise == "gaussian" else 1.0
        if isinstance(level, bool) or not isinstance(level, int | float) or not 0 <= level <= high:
            raise ValueError(f"each noise level must be a number in [0, {high}], got {level!r}")
    train_x, val_x = jnp.asarray(train_x), jnp.asarray(val_x)
    if train_x.ndim != 2 or val_x.ndim != 2 or train_x.shape[1] != val_x.shape[1]:
        raise ValueError(
            f"train_x and val_x must be (n, d) and (m, d), got {train_x.shape} and {val_x.shape}"
        )
    encoders, results = [], []
    h_train, h_val = train_x, val_x
    for k, (size, level) in enumerate(zip(hidden, noise_levels, strict=True)):
        stage_key = jax.random.fold_in(key, k)
        model = Autoencoder(
            (h_train.shape[1], size), tied=tied, rngs=nnx.Rngs(jax.random.fold_in(stage_key, 0))
        )
        _, params = functional(model)
        corrupt = _corruption(noise, level)
        result = fit(
            denoising_loss(
                model, corrupt, weight_decay=weight_decay, reconstruction=reconstruction
            ),
            params,
            optimizer,
            Dataset(h_train, jnp.zeros((h_train.shape[0],), jnp.int32)),
            Dataset(h_val, jnp.zeros((h_val.shape[0],), jnp.int32)),
            key=jax.random.fold_in(stage_key, 1),
            batch_size=batch_size,
            steps=steps,
            eval_every=eval_every,
            eval_fn=reconstruction_metrics(
                model, corruption=corrupt, key=jax.random.fold_in(stage_key, 2)
            ),
            early_stopping=early_stopping(patience),
            progress=progress,
        )
        layer = {k_: jnp.asarray(v) for k_, v in result.best_params["f"][0].items()}
        encoders.append(layer)
        results.append(result)
        h_train = jax.nn.sigmoid(h_train @ layer["kernel"] + layer["bias"][None])
        h_val = jax.nn.sigmoid(h_val @ layer["kernel"] + layer["bias"][None])
    return LayerwisePretraining(tuple(encoders), tuple(results))


def fine_tune(
    apply_fn: ApplyFn,
    params: Params,
    train: Dataset,
    val: Dataset,
    *,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    batch_size: int = 64,
    steps: int = 3000,
    eval_every: int = 50,
    patience: int = 500,
    progress: bool = False,
) -> FitResult:
    """Supervised fine-tuning of the whole stack, with early stopping on the validation loss.

    min_theta (1/|B|) sum_(x, y) -log softmax(f_theta(x))_y over all layers at once; the
    validation cross-entropy is monitored (``"loss"``) and the validation accuracy reported.

    Args:
      apply_fn: from `stacked_classifier`.
      params: the initial parameters (pre-trained or random).
      train: labelled training data (x, integer y).
      val: labelled validation data for early stopping.
      optimizer: the optimizer.
      key: the run's PRNG key.
      batch_size: mini-batch size (at most the number of training examples).
      steps: maximum optimizer steps.
      eval_every: steps between two evaluations.
      patience: early-stopping patience, in optimizer steps.
      progress: show a progress bar.

    Returns:
      The `jdl.run.FitResult` (its ``best_params`` are the early-stopped network).

    References:
      Vincent et al., "Stacked denoising autoencoders", JMLR 11 (2010), sec. 3.5;
      Bengio, "Practical recommendations for gradient-based training", 2012 (early stopping).
    """

    def loss_fn(p: Params, batch: Dataset, key: jax.Array) -> tuple[jax.Array, dict]:
        del key
        return softmax_cross_entropy(apply_fn(p, batch.x), batch.y), {}

    def eval_fn(p: Params, data: Dataset) -> dict[str, jax.Array]:
        logits = apply_fn(p, data.x)
        return {
            "loss": softmax_cross_entropy(logits, data.y),
            "accuracy": accuracy(logits, data.y),
        }

    return fit(
        loss_fn,
        params,
        optimizer,
        train,
        val,
        key=key,
        batch_size=min(batch_size, train.x.shape[0]),
        steps=steps,
        eval_every=eval_every,
        eval_fn=eval_fn,
        early_stopping=early_stopping(patience),
        progress=progress,
    )
