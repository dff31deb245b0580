"""Datasets as device arrays, checked once at the boundary; mini-batches drawn in compiled code.

A dataset is a pair ``(x, y)`` of arrays with the same leading length n (the examples). Loaders
(`digits`, `mnist1d`, `mnist`, `synthetic_regression`, `synthetic_classification`) build it through
`dataset`, which rejects non-finite values, mismatched lengths and empty sets with a
``ValueError`` saying which. Training never loops over batches in Python: `minibatch` picks batch
number ``step`` of a per-epoch permutation inside ``jit``/``scan``.
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from jdl.idx import load_idx, mnist
from jdl.mnist_1d import mnist1d
from jdl.synthetic import synthetic_classification, synthetic_regression

__all__ = [
    "Dataset",
    "Splits",
    "check_labels",
    "dataset",
    "digits",
    "load_idx",
    "minibatch",
    "mnist",
    "mnist1d",
    "standardize",
    "stratified_subset",
    "synthetic_classification",
    "synthetic_regression",
]


class Dataset(NamedTuple):
    """Inputs and labels (or targets) of n examples; a pytree, so it passes through ``jit``.

    Build it with `dataset` to have it checked.
    """

    x: jax.Array  # shape=(n, ...), inputs
    y: jax.Array  # shape=(n, ...), integer labels or real targets


class Splits(NamedTuple):
    """Training, validation and test sets of one dataset."""

    train: Dataset
    val: Dataset
    test: Dataset


def check_labels(y: jax.typing.ArrayLike, num_classes: int, *, name: str = "labels") -> None:
    """Raises a ValueError unless every class label lies in ``[0, num_classes)``.

    A label of -1 would otherwise train silently as the last class (negative indices wrap) and
    one at or above the number of the model's outputs would give a NaN loss, taken for a
    diverged run.

    Args:
      y: concrete integer labels, any shape.
      num_classes: the number of classes (of the model's outputs).
      name: what the labels are called in the message.

    Raises:
      ValueError: naming the first offending label, its example and the allowed range.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    labels = np.asarray(y)
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise ValueError(f"{name}: class labels must be integers, got dtype {labels.dtype}")
    bad = np.flatnonzero((labels.reshape(-1) < 0) | (labels.reshape(-1) >= num_classes))
    if bad.size:
        first = int(bad[0])
        example = first // max(1, math.prod(labels.shape[1:]))
        raise ValueError(
            f"{name}: label {int(labels.reshape(-1)[first])} (example {example}) is outside "
            f"[0, {num_classes - 1}], the classes of {num_classes} outputs "
            f"({bad.size} labels out of range)"
        )


def dataset(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    name: str = "dataset",
    num_classes: int | None = None,
) -> Dataset:
    """Checks concrete inputs and labels and returns them as a `Dataset` of JAX arrays.

    The checks a loader runs before anything reaches compiled code:
    ``x`` and ``y`` have at least one axis and the same leading length n (the number of
    examples), n > 0, every floating-point value is finite and, given ``num_classes``, every
    label lies in [0, num_classes) (`check_labels`).

    Args:
      x: inputs, shape ``(n, ...)``.
      y: labels or targets, shape ``(n, ...)``.
      name: what the data is called in error messages (e.g. ``"digits train split"``).
      num_classes: the number of classes of integer labels ``y``; None: not checked.

    Returns:
      ``Dataset(jnp.asarray(x), jnp.asarray(y))``.

    Raises:
      ValueError: on a scalar, mismatched lengths, an empty set, a non-finite value or a label
        out of range; the message names the data and the problem.
    """
    x_np, y_np = np.asarray(x), np.asarray(y)
    for field, a in (("x", x_np), ("y", y_np)):
        if a.ndim == 0:
            raise ValueError(f"{name}: {field} must have a leading example axis, got a scalar")
    if x_np.shape[0] != y_np.shape[0]:
        raise ValueError(
            f"{name}: mismatched lengths, x has {x_np.shape[0]} examples but y has {y_np.shape[0]}"
        )
    if x_np.shape[0] == 0:
        raise ValueError(f"{name}: empty, it has no examples")
    for field, a in (("x", x_np), ("y", y_np)):
        if np.issubdtype(a.dtype, np.inexact):
            bad = ~np.isfinite(a)
            if bad.any():
                rows = np.unique(np.nonzero(bad.reshape(a.shape[0], -1))[0])
                raise ValueError(
                    f"{name}: {field} has {int(bad.sum())} non-finite values (NaN or inf), "
                    f"first in example {int(rows[0])}"
                )
        elif not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
            raise ValueError(f"{name}: {field} must be numeric, got dtype {a.dtype}")
    if num_classes is not None:
        check_labels(y_np, num_classes, name=f"{name}: y")
    return Dataset(jnp.asarray(x_np), jnp.asarray(y_np))


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise ValueError(
            f"{name} must be a number in the open interval (0, 1) so that no split is empty, "
            f"got {value!r}"
        )


@functools.cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int32)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def digits(seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.25) -> Splits:
    """The 8x8 handwritten digits of scikit-learn, split into train / validation / test.

    1797 images of the digits 0-9 (Alpaydin & Kaynak's UCI optdigits test set), embedded in
    scikit-learn, so no network is needed. Pixels are scaled from {0, ..., 16} to [0, 1]:
    x = pixels / 16, float32 of shape (n, 64); y are int32 labels in {0, ..., 9}.

    The splits are stratified (each keeps the class proportions): first a test split of
    ``test_fraction`` of all examples, then ``val_fraction`` of the remainder for validation.
    With the defaults: 1347 train+val / 450 test, i.e. 1077 train / 270 val / 450 test, the same
    split as ``train_test_split(..., test_size=0.25, stratify=y, random_state=0)``; ``seed``
    is scikit-learn's ``random_state``.

    Args:
      seed: seed of both splits; the same seed gives the same splits.
      val_fraction: fraction of the non-test examples held out for validation, in (0, 1).
      test_fraction: fraction of all examples held out for testing, in (0, 1).

    Returns:
      ``Splits(train, val, test)`` of JAX arrays.

    Raises:
      ValueError: a fraction outside (0, 1), or one so small or large that a split would not hold
        at least one example of each class.

    References:
      scikit-learn ``sklearn.datasets.load_digits``;
      https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits
    """
    _check_fraction("test_fraction", test_fraction)
    _check_fraction("val_fraction", val_fraction)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an int, got {seed!r}")
    x, y = _digits_arrays()
    try:
        x_rest, x_test, y_rest, y_test = train_test_split(
            x, y, test_size=test_fraction, stratify=y, random_state=seed
        )
        x_train, x_val, y_train, y_val = train_test_split(
            x_rest, y_rest, test_size=val_fraction, stratify=y_rest, random_state=seed
        )
    except ValueError as e:
        raise ValueError(
            f"digits: val_fraction={val_fraction} and test_fraction={test_fraction} leave a split "
            f"with fewer examples than the 10 classes ({e})"
        ) from None
    return Splits(
        train=dataset(x_train, y_train, name="digits train split", num_classes=10),
        val=dataset(x_val, y_val, name="digits validation split", num_classes=10),
        test=dataset(x_test, y_test, name="digits test split", num_classes=10),
    )


def stratified_subset(data: Dataset, n: int, seed: int = 0) -> Dataset:
    """A random subset of ``n`` examples with the class proportions of ``data``.

    For experiments on little data (e.g. 200 digits to make overfitting visible): each class c
    keeps about n * n_c / N of its N_c examples (scikit-learn's stratified
    ``train_test_split(train_size=n)``). ``n == len(data)`` returns ``data`` unchanged.

    Args:
      data: a dataset with integer labels ``y`` of shape (N,).
      n: number of examples to keep, at least the number of classes and at most N.
      seed: seed of the draw; the same seed gives the same subset.

    Returns:
      The subset, a `Dataset` of n examples.

    Raises:
      ValueError: ``y`` is not a vector of integer labels, or ``n`` is out of range.
    """
    x_np, y_np = np.asarray(data.x), np.asarray(data.y)
    if y_np.ndim != 1 or not np.issubdtype(y_np.dtype, np.integer):
        raise ValueError(
            f"stratified_subset needs integer class labels of shape (N,), got y of shape "
            f"{y_np.shape} and dtype {y_np.dtype}"
        )
    total = y_np.shape[0]
    n_classes = np.unique(y_np).size
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not n_classes <= n <= total:
        raise ValueError(
            f"n must be an int between the number of classes ({n_classes}) and the number of "
            f"examples ({total}), got {n!r}"
        )
    if n == total:
        return data
    try:
        x_sub, _, y_sub, _ = train_test_split(
            x_np, y_np, train_size=int(n), stratify=y_np, random_state=seed
        )
    except ValueError as e:
        raise ValueError(f"stratified_subset: cannot draw {n} of {total} examples ({e})") from None
    return dataset(x_sub, y_sub, name="stratified subset")


def standardize(splits: Splits) -> Splits:
    """Standardizes every split's inputs with the training split's per-feature statistics.

    x~ = (x - mu) / s, with mu and s the mean and (population) standard deviation of each
    feature over the training examples only, so no validation or test information leaks in.
    A constant feature (s <= 1e-6 (|mu| + 1), e.g. a border pixel that is always 0) gets s = 1:
    it is centred, not divided by ~0. The course's advice on SGD learning rates (between 1e-6
    and 1, often 0.001) assumes inputs scaled this way.

    Args:
      splits: train, validation and test datasets; inputs of shape (n, ...) (the statistics are
        per feature: over the first axis only).

    Returns:
      The same splits with standardized inputs and the labels unchanged.

    Reference: Y. LeCun, L. Bottou, G. Orr, K.-R. Mueller, Efficient BackProp, in Neural
    Networks: Tricks of the Trade, 1998, section 4.3.
    """
    x = jnp.asarray(splits.train.x, jnp.float32)
    mu, s = jnp.mean(x, axis=0), jnp.std(x, axis=0)
    s = jnp.where(s > 1e-6 * (jnp.abs(mu) + 1.0), s, 1.0)
    return Splits(*(Dataset((d.x - mu[None]) / s[None], d.y) for d in splits))


def minibatch(
    data: Dataset, key: jax.Array, step: jax.typing.ArrayLike, batch_size: int
) -> Dataset:
    """Batch number ``step`` of an epoch-wise shuffling of ``data``; pure and jittable.

    With n examples and B = ``batch_size``, an epoch has m = floor(n / B) batches. Step t
    belongs to epoch e = floor(t / m) and takes positions (t mod m) B, ..., (t mod m) B + B - 1 of
    the permutation pi_e = ``jax.random.permutation(jax.random.fold_in(key, e), n)``. Within an
    epoch every example appears at most once; the n mod B examples left over at the end of pi_e
    (the ragged tail) are skipped in that epoch, a different random set each epoch.

    ``step`` may be traced (e.g. the step counter inside ``lax.scan``); ``batch_size`` fixes a
    shape, so it is a Python int.

    Args:
      data: the training set, every leaf with leading length n.
      key: the PRNG key of the data stream (the same key gives the same batches).
      step: the optimizer step t >= 0, an int or an int32 scalar array.
      batch_size: B, 1 <= B <= n.

    Returns:
      A `Dataset` of B examples.

    Raises:
      ValueError: ``batch_size`` not an int in [1, n], or leaves of different leading lengths.

    References:
      L. Bottou, Stochastic Gradient Descent Tricks, 2012 (shuffling once per epoch).
    """
    leaves = jax.tree.leaves(data)
    lengths = {leaf.shape[0] if jnp.ndim(leaf) else None for leaf in leaves}
    if len(lengths) != 1 or None in lengths:
        raise ValueError(
            f"minibatch: every array of data needs the same leading length, got shapes "
            f"{[jnp.shape(leaf) for leaf in leaves]}"
        )
    (n,) = lengths
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise ValueError(f"batch_size must be a Python int, got {batch_size!r}")
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be between 1 and the {n} examples, got {batch_size}")
    batches_per_epoch = n // batch_size
    step = jnp.asarray(step)
    epoch = step // batches_per_epoch
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    start = (step % batches_per_epoch) * batch_size
    idx = jax.lax.dynamic_slice_in_dim(perm, start, batch_size)
    return jax.tree.map(lambda a: jnp.take(a, idx, axis=0), data)
