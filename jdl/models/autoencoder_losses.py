"""Training objectives of the autoencoder family, as ``loss_fn(params, batch, key)`` functions.

Each builder takes the `Autoencoder` whose parameters are trained (``params`` as returned by
``jdl.models.functional(model)``) and returns a pure ``loss_fn(params, batch, key) ->
(loss, aux)`` for `jdl.run.fit`; only ``batch.x`` is used. The variants of the course:

- undercomplete / deep: `autoencoder_loss` with the reconstruction term alone;
- sparse (usually overcomplete): `sparse_loss`, L1 or KL penalty on the code h;
- denoising: `denoising_loss`, reconstruct the clean x from a corrupted x~;
- contractive: `contractive_loss`, penalise ||dh/dx||_F^2.

Every coefficient is data (a Python float, or a jax array that may be traced under ``vmap``);
a term whose coefficient is the Python number 0 is left out of the compiled loss.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jdl import regularizers
from jdl.data import Dataset
from jdl.hyperparams import check_coefficient, is_traced
from jdl.losses import binary_cross_entropy_with_logits, mse
from jdl.models.autoencoder import Autoencoder

Params = Any
LossFn = Callable[[Params, Dataset, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]
EvalFn = Callable[[Params, Dataset], dict[str, jax.Array]]
Corruption = Callable[[jax.Array, jax.Array], jax.Array]
"""``corrupt(key, x) -> x_tilde``: a stochastic corruption of a batch (see `jdl.augment`)."""

RECONSTRUCTIONS = ("mse", "bce")
CONTRACTION_METHODS = ("exact", "estimate", "sigmoid")

__all__ = [
    "autoencoder_loss",
    "contractive_loss",
    "denoising_loss",
    "reconstruction_metrics",
    "sparse_loss",
]


def _is_zero(value: jax.typing.ArrayLike) -> bool:
    """True for a concrete coefficient equal to 0 (its term is left out); never for a tracer."""
    return not is_traced(value) and np.ndim(value) == 0 and value == 0


def _check_model(model: object) -> None:
    if not isinstance(model, Autoencoder):
        raise TypeError(f"model must be a jdl.models.Autoencoder, got {type(model).__name__}")


def _check_reconstruction(model: Autoencoder, reconstruction: str) -> None:
    if reconstruction not in RECONSTRUCTIONS:
        raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {reconstruction!r}")
    if reconstruction == "bce" and model.output_activation is not jax.nn.sigmoid:
        raise ValueError(
            "reconstruction='bce' needs output_activation=jax.nn.sigmoid (the loss is computed "
            "from the output pre-activation as logits)"
        )


def _reconstruction_error(
    module: Autoencoder, h: jax.Array, x: jax.Array, reconstruction: str
) -> jax.Array:
    """l(x, g(h)): squared error per pixel, or per-pixel cross-entropy from the logits."""
    if reconstruction == "bce":
        logits = module.decode_preactivation(h)
        return binary_cross_entropy_with_logits(logits, x)
    return mse(module.decode(h), x)


def autoencoder_loss(
    model: Autoencoder,
    *,
    reconstruction: str = "mse",
    corruption: Corruption | None = None,
    l1_code: jax.typing.ArrayLike = 0.0,
    kl_code: jax.typing.ArrayLike = 0.0,
    kl_target: jax.typing.ArrayLike = 0.05,
    contraction: jax.typing.ArrayLike = 0.0,
    contraction_method: str = "exact",
    weight_decay: jax.typing.ArrayLike = 0.0,
) -> LossFn:
    """The general autoencoder objective; every variant of the course is a setting of it.

    L(theta; B) = (1/|B|) sum_{x in B} l(x, g(f(x~)))                     (reconstruction)
                  + l1_code (1/|B|) sum_x sum_j |h_j|                      (L1 sparsity)
                  + kl_code sum_j KL(rho || rho_hat_j)                      (KL sparsity)
                  + contraction (1/|B|) sum_x ||dh/dx||_F^2                 (contractive)
                  + weight_decay sum_l ||W_l||_F^2                          (weight decay)

    with h = f(x~) the code of the corrupted input (x~ = x when ``corruption`` is None) and
    l the per-pixel reconstruction error, averaged over the d pixels: the squared error
    (1/d) ||x - x_hat||^2 (``"mse"``), or the cross-entropy
    -(1/d) sum_i [x_i log x_hat_i + (1 - x_i) log(1 - x_hat_i)] for x in [0, 1] (``"bce"``,
    computed from the output pre-activation as logits; needs a sigmoid output). The sparsity
    and contractive terms are taken at the clean input's code; the weight decay is on the
    kernels only (biases excluded), each shared kernel counted once.

    Args:
      model: the `Autoencoder` (its structure; the values come from ``params``).
      reconstruction: ``"mse"`` or ``"bce"``.
      corruption: ``corrupt(key, x) -> x~`` (e.g. from `jdl.augment`), or None.
      l1_code: coefficient of the L1 penalty on the code, >= 0.
      kl_code: coefficient beta of the KL penalty (needs a code in (0, 1)), >= 0.
      kl_target: target mean activation rho of the KL penalty, 0 < rho < 1.
      contraction: coefficient lambda of the contractive penalty, >= 0.
      contraction_method: ``"exact"`` (the Jacobian), ``"estimate"`` (one random projection
        per example, unbiased), or ``"sigmoid"`` (the closed form of a one-layer sigmoid
        encoder, sum_j (h_j (1 - h_j))^2 sum_i W_ij^2).
      weight_decay: coefficient lambda of sum_l ||W_l||_F^2, >= 0.

    Returns:
      ``loss_fn(params, batch, key) -> (loss, aux)``; aux holds ``"reconstruction"`` and each
      penalty that is present (``"l1_code"``, ``"kl_code"``, ``"contraction"``,
      ``"weight_decay"``).

    References:
      Goodfellow, Bengio, Courville, "Deep Learning" (2016), ch. 14; Ng, "Sparse autoencoder",
      CS294A notes (2011); Vincent et al., ICML 2008; Rifai et al., ICML 2011.
    """
    _check_model(model)
    _check_reconstruction(model, reconstruction)
    for name, value in (
        ("l1_code", l1_code),
        ("kl_code", kl_code),
        ("contraction", contraction),
        ("weight_decay", weight_decay),
    ):
        check_coefficient(name, value)
    if corruption is not None and not callable(corruption):
        raise TypeError(
            f"corruption must be callable (key, x) -> x_tilde or None, got {corruption!r}"
        )
    if contraction_method not in CONTRACTION_METHODS:
        raise ValueError(
            f"contraction_method must be one of {CONTRACTION_METHODS}, got {contraction_method!r}"
        )
    if contraction_method == "sigmoid" and (
        len(model.f) != 1 or model.code_activation is not jax.nn.sigmoid
    ):
        raise ValueError(
            "contraction_method='sigmoid' needs a one-layer encoder with a sigmoid code, got "
            f"features={model.features}"
        )
    if not _is_zero(kl_code) and model.code_activation is not jax.nn.sigmoid:
        raise ValueError("kl_code needs a code in (0, 1): use code_activation=jax.nn.sigmoid")
    if not is_traced(kl_target) and not 0.0 < float(kl_target) < 1.0:
        raise ValueError(f"kl_target must satisfy 0 < rho < 1, got {kl_target!r}")
    graphdef, _, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(params: Params, batch: Dataset, key: jax.Array) -> tuple[jax.Array, dict]:
        module = nnx.merge(graphdef, params, rest)
        x = batch.x
        x_in = x if corruption is None else corruption(jax.random.fold_in(key, 0), x)
        h = module.encode(x_in)
        aux = {"reconstruction": _reconstruction_error(module, h, x, reconstruction)}
        h_clean = h if corruption is None else module.encode(x)
        if not _is_zero(l1_code):
            aux["l1_code"] = regularizers.activation_l1(h_clean, l1_code)
        if not _is_zero(kl_code):
            aux["kl_code"] = regularizers.kl_sparsity(h_clean, kl_target, kl_code)
        if not _is_zero(contraction):
            if contraction_method == "sigmoid":
                kernel = module.f[0].kernel[...]
                aux["contraction"] = regularizers.sigmoid_contractive_penalty(
                    h_clean, kernel, contraction
                )
            elif contraction_method == "estimate":
                aux["contraction"] = regularizers.jacobian_penalty_estimate(
                    module.encode, x, jax.random.fold_in(key, 1), contraction
                )
            else:
                aux["contraction"] = regularizers.jacobian_penalty(module.encode, x, contraction)
        if not _is_zero(weight_decay):
            # l2_penalty is (c / 2) ||w||^2; the course's term is lambda ||W||_F^2.
            aux["weight_decay"] = regularizers.l2_penalty(params, 2.0 * weight_decay)
        loss = sum(aux.values(), start=jnp.zeros(()))
        return loss, aux

    return loss_fn


def sparse_loss(
    model: Autoencoder,
    *,
    l1_code: jax.typing.ArrayLike = 0.0,
    kl_code: jax.typing.ArrayLike = 0.0,
    kl_target: jax.typing.ArrayLike = 0.05,
    reconstruction: str = "mse",
) -> LossFn:
    """Sparse autoencoder: reconstruction + Omega(h), the code kept mostly near zero.

    L = (1/|B|) sum_x l(x, g(h)) + Omega(h), h = f(x), with
    Omega(h) = l1_code (1/|B|) sum_x sum_j |h_j|  (L1 on the code), and/or
    Omega(h) = kl_code sum_j KL(rho || rho_hat_j),  rho_hat_j = (1/|B|) sum_x h_j(x)  (KL target).
    With an overcomplete code (more units than inputs) the penalty is what keeps the
    autoencoder from learning the identity. At least one coefficient must be non-zero.

    Args:
      model: the `Autoencoder`.
      l1_code: L1 coefficient, >= 0.
      kl_code: KL coefficient beta, >= 0 (sigmoid code).
      kl_target: rho, 0 < rho < 1.
      reconstruction: ``"mse"`` or ``"bce"``.

    Returns:
      ``loss_fn(params, batch, key) -> (loss, aux)`` (see `autoencoder_loss`).

    References:
      Goodfellow et al., "Deep Learning" (2016), sec. 14.2.1; Ng, "Sparse autoencoder",
      CS294A lecture notes (2011).
    """
    if _is_zero(l1_code) and _is_zero(kl_code):
        raise ValueError("sparse_loss needs l1_code > 0 or kl_code > 0")
    return autoencoder_loss(
        model,
        reconstruction=reconstruction,
        l1_code=l1_code,
        kl_code=kl_code,
        kl_target=kl_target,
    )


def denoising_loss(
    model: Autoencoder,
    corruption: Corruption,
    *,
    weight_decay: jax.typing.ArrayLike = 0.0,
    reconstruction: str = "mse",
) -> LossFn:
    """Denoising autoencoder: reconstruct the clean x from a corrupted x~ ~ C(x~ | x).

    The course's objective (per pixel, averaged over the batch):
    L = (1/|B|) sum_x l(x, x_hat) + lambda (||W1||_F^2 + ||W2||_F^2),
    h = s(W1 x~ + b1), x_hat = s(W2 h + b2), x~ = corrupt(key, x)
    (Gaussian, masking or salt-and-pepper noise from `jdl.augment`); the loss is always
    against the clean x. A fresh corruption is drawn at every step from the step's key.

    Args:
      model: the `Autoencoder`.
      corruption: ``corrupt(key, x) -> x~``.
      weight_decay: lambda >= 0 (kernels only; a tied kernel counts once).
      reconstruction: ``"mse"`` or ``"bce"``.

    Returns:
      ``loss_fn(params, batch, key) -> (loss, aux)`` (see `autoencoder_loss`).

    References:
      Vincent, Larochelle, Bengio, Manzagol, "Extracting and composing robust features with
      denoising autoencoders", ICML 2008; Goodfellow et al., "Deep Learning", sec. 14.5.
    """
    if not callable(corruption):
        raise TypeError(f"corruption must be callable (key, x) -> x_tilde, got {corruption!r}")
    return autoencoder_loss(
        model, reconstruction=reconstruction, corruption=corruption, weight_decay=weight_decay
    )


def contractive_loss(
    model: Autoencoder,
    contraction: jax.typing.ArrayLike,
    *,
    method: str = "exact",
    reconstruction: str = "mse",
) -> LossFn:
    """Contractive autoencoder: reconstruction + lambda ||dh/dx||_F^2.

    L = (1/|B|) sum_x [ l(x, g(f(x))) + lambda ||J_f(x)||_F^2 ],  J_f(x) = dh/dx.
    For a one-layer sigmoid encoder h = sigmoid(W^T x + b) (``method="sigmoid"``),
    ||J_f(x)||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ij^2 (no Jacobian is built);
    ``"exact"`` builds the Jacobian (any encoder); ``"estimate"`` uses one random projection
    per example, an unbiased estimate.

    Args:
      model: the `Autoencoder`.
      contraction: lambda >= 0.
      method: ``"exact"``, ``"estimate"`` or ``"sigmoid"``.
      reconstruction: ``"mse"`` or ``"bce"``.

    Returns:
      ``loss_fn(params, batch, key) -> (loss, aux)`` (see `autoencoder_loss`).

    References:
      Rifai, Vincent, Muller, Glorot, Bengio, "Contractive auto-encoders: explicit invariance
      during feature extraction", ICML 2011, eqs. 2 and 5.
    """
    return autoencoder_loss(
        model,
        reconstruction=reconstruction,
        contraction=contraction,
        contraction_method=method,
    )


def reconstruction_metrics(
    model: Autoencoder, *, corruption: Corruption | None = None, key: jax.Array | None = None
) -> EvalFn:
    """Evaluation of a reconstruction: ``eval_fn(params, data) -> {"loss", "mse"}``.

    mse = (1 / (n d)) sum_x ||x - g(f(x~))||^2, the test MSE per pixel against the clean x, with
    x~ = corrupt(key, x) for a fixed ``key`` (the same corrupted set at every evaluation) or
    x~ = x; ``"loss"`` (the value early stopping monitors) equals ``"mse"``.

    Args:
      model: the `Autoencoder`.
      corruption: ``corrupt(key, x) -> x~``, or None for the clean input.
      key: the fixed PRNG key of the corruption (required with ``corruption``).

    Returns:
      ``eval_fn(params, data) -> dict`` of scalars, usable as `jdl.run.fit`'s ``eval_fn``.
    """
    _check_model(model)
    if corruption is not None and key is None:
        raise ValueError("reconstruction_metrics with a corruption needs a fixed key")
    graphdef, _, rest = nnx.split(model, nnx.Param, ...)

    def eval_fn(params: Params, data: Dataset) -> dict[str, jax.Array]:
        module = nnx.merge(graphdef, params, rest)
        x_in = data.x if corruption is None else corruption(key, data.x)
        error = mse(module(x_in), data.x)
        return {"loss": error, "mse": error}

    return eval_fn
