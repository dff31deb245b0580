"""Datasets as device arrays, checked once at the boundary; mini-batches drawn in compiled code.

A dataset is a pair ``(x, y)`` of arrays with the same leading length n (the examples). Loaders
(`digits`, `mnist1d`, `mnist`, `synthetic_regression`, `synthetic_classification`) build it through
`dataset`, which rejects non-finite values, mismatched lengths and empty sets with a
``ValueError`` saying which. Training never loops over batches in Python: `minibatch` picks batch
number ``step`` of a per-epoch permutation inside ``jit``/``scan``.
"""

import functools
import gzip
import math
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from jdl.mnist_1d import mnist1d

__all__ = [
    "Dataset",
    "Splits",
    "dataset",
    "digits",
    "load_idx",
    "minibatch",
    "mnist",
    "mnist1d",
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


def dataset(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike, *, name: str = "dataset") -> Dataset:
    """Checks concrete inputs and labels and returns them as a `Dataset` of JAX arrays.

    The checks a loader runs before anything reaches compiled code:
    ``x`` and ``y`` have at least one axis and the same leading length n (the number of
    examples), n > 0, and every floating-point value is finite.

    Args:
      x: inputs, shape ``(n, ...)``.
      y: labels or targets, shape ``(n, ...)``.
      name: what the data is called in error messages (e.g. ``"digits train split"``).

    Returns:
      ``Dataset(jnp.asarray(x), jnp.asarray(y))``.

    Raises:
      ValueError: on a scalar, mismatched lengths, an empty set or a non-finite value; the message
        names the data and the problem.
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
        train=dataset(x_train, y_train, name="digits train split"),
        val=dataset(x_val, y_val, name="digits validation split"),
        test=dataset(x_test, y_test, name="digits test split"),
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


# IDX type codes (third byte of the magic number) -> big-endian numpy dtype.
# http://yann.lecun.com/exdb/mnist/ ("THE IDX FILE FORMAT")
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (the MNIST format), raw or gzip-compressed, into a NumPy array.

    Layout (all integers big-endian): the magic number ``0x00 0x00 t d`` where ``t`` codes the
    element type (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64) and
    ``d`` is the number of dimensions; then d uint32 sizes s_1, ..., s_d; then the
    s_1 * ... * s_d elements in C order. A file starting with the gzip magic bytes is
    decompressed first, whatever its name.

    Args:
      path: the ``.idx`` (or ``.gz``) file, e.g. ``train-images-idx3-ubyte.gz``.

    Returns:
      An array of shape (s_1, ..., s_d) in native byte order and the file's element type, on the
      host (a loader such as `mnist` converts it to JAX arrays).

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: a corrupt gzip stream, a bad magic number (non-zero first bytes, unknown type
        code, zero dimensions), or a payload shorter (truncated) or longer (trailing data) than
        the sizes announce; the message names the file and the problem.

    References:
      LeCun, Cortes & Burges, The MNIST database, http://yann.lecun.com/exdb/mnist/
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip stream ({e})") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: too short for an IDX magic number ({len(raw)} bytes, need 4)")
    zero, code, ndim = raw[:2], raw[2], raw[3]
    if zero != b"\x00\x00":
        raise ValueError(
            f"{path}: not an IDX file, the magic number must start with two zero bytes, got "
            f"{raw[:4].hex()}"
        )
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header announces 0 dimensions, need at least 1")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{path}: truncated header, {ndim} dimensions need {header} bytes, file has {len(raw)}"
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    actual = len(raw) - header
    if actual < expected:
        raise ValueError(
            f"{path}: truncated, shape {shape} of {dtype.name} needs {expected} data bytes, "
            f"file has {actual}"
        )
    if actual > expected:
        raise ValueError(
            f"{path}: {actual - expected} bytes of trailing data after the {expected} bytes "
            f"announced by shape {shape}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header)
    return data.reshape(shape).astype(dtype.newbyteorder("="))


def mnist(images_path: str | os.PathLike, labels_path: str | os.PathLike) -> Dataset:
    """MNIST-format images and labels as a `Dataset` (e.g. the MNIST or Fashion-MNIST files).

    x = pixels / 255 as float32 of shape (n, rows * cols) (flattened, like `digits`), y the int32
    labels of shape (n,).

    Args:
      images_path: IDX file of uint8 images, shape (n, rows, cols), raw or .gz.
      labels_path: IDX file of uint8 labels, shape (n,), raw or .gz.

    Returns:
      The checked `Dataset`.

    Raises:
      FileNotFoundError: a file does not exist.
      ValueError: a corrupt file (see `load_idx`), images not uint8 of 3 dimensions, labels not a
        uint8 vector, or different numbers of images and labels.

    References:
      LeCun, Cortes & Burges, The MNIST database, http://yann.lecun.com/exdb/mnist/
    """
    images, labels = load_idx(images_path), load_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(
            f"{os.fspath(images_path)}: expected uint8 images of shape (n, rows, cols), got "
            f"{images.dtype} of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{os.fspath(labels_path)}: expected uint8 labels of shape (n,), got {labels.dtype} "
            f"of shape {labels.shape}"
        )
    x = images.reshape(images.shape[0], -1).astype(np.float32) / 255.0
    return dataset(x, labels.astype(np.int32), name="mnist")


def _as_key(key_or_seed: jax.Array | int) -> jax.Array:
    if isinstance(key_or_seed, int | np.integer) and not isinstance(key_or_seed, bool):
        return jax.random.key(int(key_or_seed))
    return key_or_seed


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_nonnegative(name: str, value: float) -> None:
    if isinstance(value, int | float | np.number) and not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def synthetic_regression(
    key_or_seed: jax.Array | int, n: int, *, n_features: int = 1, noise_std: float = 0.1
) -> Dataset:
    """Noisy samples of a smooth function, the curve-fitting example of under/overfitting.

    x_i ~ U[-1, 1]^d and y_i = (1/d) sum_k sin(pi x_ik) + noise_std * eps_i, eps_i ~ N(0, 1);
    with d = 1 this is Bishop's sin(2 pi x) on [0, 1] moved to [-1, 1].

    Args:
      key_or_seed: a PRNG key or an int seed.
      n: number of examples (>= 1).
      n_features: input dimension d (>= 1).
      noise_std: standard deviation of the target noise (>= 0).

    Returns:
      ``Dataset(x, y)`` with x float32 of shape (n, d) and y float32 of shape (n, 1).

    References:
      C. M. Bishop, Pattern Recognition and Machine Learning, 2006, section 1.1.
    """
    _check_count("n", n, 1)
    _check_count("n_features", n_features, 1)
    _check_nonnegative("noise_std", noise_std)
    x, y = _regression_arrays(_as_key(key_or_seed), noise_std, n, n_features)
    return dataset(x, y, name="synthetic regression")


@functools.partial(jax.jit, static_argnums=(2, 3))
def _regression_arrays(
    key: jax.Array, noise_std: jax.typing.ArrayLike, n: int, n_features: int
) -> tuple[jax.Array, jax.Array]:
    key_x, key_eps = jax.random.split(key)
    x = jax.random.uniform(key_x, (n, n_features), minval=-1.0, maxval=1.0)
    f = jnp.mean(jnp.sin(jnp.pi * x), axis=1, keepdims=True)
    return x, f + noise_std * jax.random.normal(key_eps, (n, 1))


def synthetic_classification(
    key_or_seed: jax.Array | int,
    n: int,
    *,
    n_classes: int = 2,
    n_features: int = 2,
    separation: float = 2.0,
) -> Dataset:
    """Gaussian blobs: one isotropic unit-variance Gaussian per class.

    Class centres mu_c ~ N(0, separation^2 I_d) are drawn once from the key; the labels are
    balanced and interleaved, y_i = i mod C (so any prefix is balanced too), and
    x_i ~ N(mu_{y_i}, I_d). A larger ``separation``
    makes the classes easier to tell apart.

    Args:
      key_or_seed: a PRNG key or an int seed.
      n: number of examples (>= n_classes).
      n_classes: number of classes C (>= 2).
      n_features: input dimension d (>= 1).
      separation: standard deviation of the class centres (>= 0).

    Returns:
      ``Dataset(x, y)`` with x float32 of shape (n, d) and y int32 labels of shape (n,).
    """
    _check_count("n_classes", n_classes, 2)
    _check_count("n", n, n_classes)
    _check_count("n_features", n_features, 1)
    _check_nonnegative("separation", separation)
    x, y = _blob_arrays(_as_key(key_or_seed), separation, n, n_classes, n_features)
    return dataset(x, y, name="synthetic classification")


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _blob_arrays(
    key: jax.Array, separation: jax.typing.ArrayLike, n: int, n_classes: int, n_features: int
) -> tuple[jax.Array, jax.Array]:
    key_mu, key_x = jax.random.split(key)
    centres = separation * jax.random.normal(key_mu, (n_classes, n_features))
    y = jnp.arange(n, dtype=jnp.int32) % n_classes
    return centres[y] + jax.random.normal(key_x, (n, n_features)), y


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
