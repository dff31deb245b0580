"""Error functions and metrics: each maps a batch of predictions and targets to a scalar mean.

Shapes are checked at the call (a ``ValueError`` naming both shapes) instead of broadcasting
silently: ``mse`` of predictions (n, 1) against targets (n,) would otherwise average an (n, n)
matrix. Hyper-parameters (Dice's ``smooth``) may be Python numbers, checked here, or traced arrays.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "accuracy",
    "binary_cross_entropy_with_logits",
    "dice_loss",
    "mse",
    "multiclass_dice_loss",
    "softmax_cross_entropy",
]


def _floating(name: str, a: jax.typing.ArrayLike) -> jax.Array:
    a = jnp.asarray(a)
    if not jnp.issubdtype(a.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {a.dtype}")
    return a


def _same_shape(fn: str, a_name: str, a: jax.Array, b_name: str, b: jax.Array) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{fn}: {a_name} and {b_name} must have the same shape, got {a_name} {a.shape} and "
            f"{b_name} {b.shape}"
        )


def _scores_and_labels(
    fn: str, name: str, scores: jax.typing.ArrayLike, labels: jax.typing.ArrayLike
) -> tuple[jax.Array, jax.Array]:
    scores, labels = _floating(name, scores), jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"{fn}: labels must be integer class indices, got dtype {labels.dtype}")
    if scores.ndim < 1 or scores.shape[:-1] != labels.shape:
        raise ValueError(
            f"{fn}: {name} must have shape labels.shape + (n_classes,), got {name} "
            f"{scores.shape} and labels {labels.shape}"
        )
    return scores, labels


def mse(pred: jax.typing.ArrayLike, target: jax.typing.ArrayLike) -> jax.Array:
    """Mean squared error over every element: E = (1/N) sum_i (y_hat_i - y_i)^2.

    N counts all elements (examples times outputs), so for images this is the per-pixel MSE.

    Args:
      pred: predictions y_hat, any shape.
      target: targets y, the same shape.

    Returns:
      The scalar mean.

    Raises:
      ValueError: different shapes. TypeError: non-floating predictions.

    References:
      Goodfellow, Bengio & Courville, Deep Learning, 2016, section 5.1.4.
    """
    pred = _floating("pred", pred)
    target = jnp.asarray(target, pred.dtype)
    _same_shape("mse", "pred", pred, "target", target)
    return jnp.mean(optax.losses.squared_error(pred, target))


def binary_cross_entropy_with_logits(
    logits: jax.typing.ArrayLike, labels: jax.typing.ArrayLike
) -> jax.Array:
    """Binary cross-entropy of sigmoid(logits) against (possibly soft) labels, mean over elements.

    With a = logits and y in [0, 1]:
    E = -(1/N) sum_i [y_i log sigma(a_i) + (1 - y_i) log(1 - sigma(a_i))], evaluated as
    -[y_i log_sigmoid(a_i) + (1 - y_i) log_sigmoid(-a_i)], finite for any finite a. Soft labels
    make it the per-pixel reconstruction loss of inputs in [0, 1] (its minimum over a_i is then
    the entropy of y_i, reached at sigma(a_i) = y_i, not 0). dE/da_i = (sigma(a_i) - y_i) / N.

    Args:
      logits: pre-sigmoid outputs a, any shape.
      labels: targets y in [0, 1], the same shape (not checked inside compiled code).

    Returns:
      The scalar mean.

    Raises:
      ValueError: different shapes. TypeError: non-floating logits.

    References:
      Bishop, Pattern Recognition and Machine Learning, 2006, section 4.3.2;
      optax.losses.sigmoid_binary_cross_entropy.
    """
    logits = _floating("logits", logits)
    labels = jnp.asarray(labels, logits.dtype)
    _same_shape("binary_cross_entropy_with_logits", "logits", logits, "labels", labels)
    return jnp.mean(optax.losses.sigmoid_binary_cross_entropy(logits, labels))


def softmax_cross_entropy(logits: jax.typing.ArrayLike, labels: jax.typing.ArrayLike) -> jax.Array:
    """Cross-entropy of softmax(logits) against integer labels, mean over examples.

    E = -(1/n) sum_i log softmax(a_i)_{y_i} = (1/n) sum_i [logsumexp(a_i) - a_{i, y_i}];
    dE/da_ic = (softmax(a_i)_c - [c = y_i]) / n. Labels outside [0, n_classes) are not checked
    inside compiled code.

    Args:
      logits: pre-softmax outputs a, shape (..., n_classes).
      labels: integer classes y, shape (...).

    Returns:
      The scalar mean.

    Raises:
      ValueError: logits not of shape labels.shape + (n_classes,). TypeError: non-integer labels.

    References:
      Bishop, Pattern Recognition and Machine Learning, 2006, section 4.3.4;
      optax.losses.softmax_cross_entropy_with_integer_labels.
    """
    logits, labels = _scores_and_labels("softmax_cross_entropy", "logits", logits, labels)
    return jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels))


def accuracy(logits: jax.typing.ArrayLike, labels: jax.typing.ArrayLike) -> jax.Array:
    """Fraction of examples whose largest logit is the label: (1/n) sum_i [argmax_c a_ic = y_i].

    Ties go to the lowest class index (``jnp.argmax``).

    Args:
      logits: scores a (logits or probabilities), shape (..., n_classes).
      labels: integer classes y, shape (...).

    Returns:
      The scalar fraction in [0, 1], float32.

    Raises:
      ValueError: logits not of shape labels.shape + (n_classes,). TypeError: non-integer labels.
    """
    logits, labels = _scores_and_labels("accuracy", "logits", logits, labels)
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels, dtype=jnp.float32)


def _check_smooth(smooth: jax.typing.ArrayLike) -> None:
    if isinstance(smooth, int | float | np.number) and not (math.isfinite(smooth) and smooth >= 0):
        raise ValueError(f"smooth must be a finite number >= 0, got {smooth!r}")


def _dice_coefficient(
    p: jax.Array, g: jax.Array, axes: tuple[int, ...], smooth: jax.typing.ArrayLike, squared: bool
) -> jax.Array:
    intersection = jnp.sum(p * g, axis=axes)
    if squared:
        union = jnp.sum(p * p, axis=axes) + jnp.sum(g * g, axis=axes)
    else:
        union = jnp.sum(p, axis=axes) + jnp.sum(g, axis=axes)
    numerator, denominator = 2.0 * intersection + smooth, union + smooth
    # 0/0 only when prediction and target are both empty (and s = 0): D = 1 there, a perfect
    # match. The safe denominator keeps the unused branch and its gradient finite; D is
    # unchanged wherever the denominator is not 0.
    empty = denominator == 0
    return jnp.where(empty, 1.0, numerator / jnp.where(empty, 1.0, denominator))


def dice_loss(
    probs: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    *,
    smooth: jax.typing.ArrayLike = 0.0,
    squared: bool = False,
) -> jax.Array:
    """Binary Dice loss 1 - D, per example, mean over examples.

    For one example with foreground probabilities p_i and targets g_i (i over its pixels/voxels),
    the default is the course's formula exactly,

      D = 2 sum_i p_i g_i / (sum_i p_i + sum_i g_i),

    with D = 1 when both sums are 0 (an empty prediction of an empty target). On request, with
    s = ``smooth``:

    - soft Dice (``squared=False``): D = (2 sum_i p_i g_i + s) / (sum_i p_i + sum_i g_i + s)
    - V-Net (``squared=True``):  D = (2 sum_i p_i g_i + s) / (sum_i p_i^2 + sum_i g_i^2 + s)

    D in [0, 1] measures the overlap of the predicted and true foreground; the background does
    not enter, so a small object among many background pixels is not swamped (robust to class
    imbalance, unlike the per-pixel cross-entropy). The only 0/0, both empty with s = 0, is
    defined as D = 1 (the limit with any s > 0); D is unchanged elsewhere, however small the
    sums: a tiny prediction of an empty target has D = 0.

    Gradient. Write I = sum_i p_i g_i and U = sum_i p_i^2 + sum_i g_i^2 (V-Net) or
    U = sum_i p_i + sum_i g_i (soft Dice). The quotient rule on D = (2I + s) / (U + s) with
    dI/dp_j = g_j gives

      dD/dp_j = [2 g_j (U + s) - (2I + s) dU/dp_j] / (U + s)^2,

    with dU/dp_j = 2 p_j (V-Net) or 1 (soft Dice). For V-Net with s = 0 this is Milletari et al.'s

      dD/dp_j = 2 [g_j (sum_i p_i^2 + sum_i g_i^2) - 2 p_j sum_i p_i g_i]
                / (sum_i p_i^2 + sum_i g_i^2)^2,

    and the loss's gradient is -dD/dp_j / n for a batch of n examples.

    Args:
      probs: foreground probabilities p (e.g. sigmoid outputs), shape (n, ...) with at least one
        axis after the example axis; the sums run over all axes but the first.
      targets: g in [0, 1] (binary masks or soft targets), the same shape.
      smooth: s >= 0, a Python number or an array (traced under ``vmap``); default 0, the
        course's formula.
      squared: True for V-Net's squared denominator; default False, the course's linear one.

    Returns:
      The scalar mean of 1 - D over the n examples.

    Raises:
      ValueError: different shapes, fewer than two axes, or a negative or non-finite ``smooth``.
      TypeError: non-floating ``probs``.

    References:
      F. Milletari, N. Navab, S.-A. Ahmadi, V-Net: Fully Convolutional Neural Networks for
      Volumetric Medical Image Segmentation, 3DV 2016, https://arxiv.org/abs/1606.04797;
      C. H. Sudre et al., Generalised Dice overlap as a deep learning loss function for highly
      unbalanced segmentations, DLMIA 2017, https://arxiv.org/abs/1707.03237.
    """
    p = _floating("probs", probs)
    g = jnp.asarray(targets, p.dtype)
    _same_shape("dice_loss", "probs", p, "targets", g)
    if p.ndim < 2:
        raise ValueError(
            f"dice_loss: probs must have shape (n, ...) with an example axis and at least one "
            f"axis to sum over, got {p.shape}; reshape a single mask to (1, ...)"
        )
    _check_smooth(smooth)
    d = _dice_coefficient(p, g, tuple(range(1, p.ndim)), smooth, squared)
    return 1.0 - jnp.mean(d)


def multiclass_dice_loss(
    probs: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    smooth: jax.typing.ArrayLike = 0.0,
    squared: bool = False,
) -> jax.Array:
    """Multi-class Dice loss: 1 - the per-class Dice averaged over classes and examples.

    With g_ic = [y_i = c] the one-hot labels, D_c is `dice_loss`'s coefficient of class c's
    probabilities p_ic against g_ic over the pixels i of one example, and

      L = 1 - (1/(n C)) sum_examples sum_c D_c.

    Every class weighs the same whatever its pixel count, so a rare class missed entirely costs
    1/C of the loss, however few pixels it has. dD_c/dp_jc is `dice_loss`'s formula for class c.
    A class absent from an example and not predicted there has D_c = 1 (the 0/0 guard of
    `dice_loss`, or s > 0).

    Args:
      probs: class probabilities (e.g. a softmax over the last axis), shape (n, ..., C); the sums
        run over the axes between the first and the last (none for shape (n, C)).
      labels: integer classes in [0, C), shape (n, ...) = probs.shape[:-1].
      smooth: s >= 0, a Python number or an array (traced under ``vmap``); default 0.
      squared: True for V-Net's squared denominator; default False, the course's linear one.

    Returns:
      The scalar loss.

    Raises:
      ValueError: labels not of shape probs.shape[:-1], fewer than 2 classes, probs without an
        example axis, or a negative or non-finite ``smooth``. TypeError: non-integer labels or
        non-floating probs.

    References:
      F. Milletari et al., V-Net, 3DV 2016, https://arxiv.org/abs/1606.04797;
      C. H. Sudre et al., Generalised Dice overlap, DLMIA 2017, https://arxiv.org/abs/1707.03237.
    """
    p, labels = _scores_and_labels("multiclass_dice_loss", "probs", probs, labels)
    if p.ndim < 2 or p.shape[-1] < 2:
        raise ValueError(
            f"multiclass_dice_loss: probs must have shape (n, ..., C) with C >= 2 classes, got "
            f"{p.shape}"
        )
    _check_smooth(smooth)
    g = jax.nn.one_hot(labels, p.shape[-1], dtype=p.dtype)
    d = _dice_coefficient(p, g, tuple(range(1, p.ndim - 1)), smooth, squared)
    return 1.0 - jnp.mean(d)
