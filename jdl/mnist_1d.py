"""MNIST-1D (Greydanus 2020): ten 1-D templates, transformed and noised into signals of length 40.

Generated locally by the ``mnist1d`` package's procedural generator, never downloaded.
Re-exported by `jdl.data`, which is where users find it.
"""

from __future__ import annotations

import functools
import random
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from sklearn.model_selection import train_test_split

if TYPE_CHECKING:
    from jdl.data import Splits

__all__ = ["mnist1d"]

# The reference dataset of the package's table (logistic regression 32%, MLP 68%, CNN 94%,
# GRU 91% test accuracy): 5000 signals, the first 80% for training, of length 40.
NUM_TRAIN, NUM_TEST, LENGTH, NUM_CLASSES = 4000, 1000, 40, 10


class _Arrays(NamedTuple):
    x: np.ndarray  # shape=(4000, 40), float32, the reference training signals
    y: np.ndarray  # shape=(4000,), int32
    x_test: np.ndarray  # shape=(1000, 40), float32
    y_test: np.ndarray  # shape=(1000,), int32
    positions: np.ndarray  # shape=(40,), int64, the reference position shuffle


@functools.cache
def _mnist1d_arrays() -> _Arrays:
    """The reference signals and position shuffle, generated once per process.

    ``make_dataset`` seeds NumPy's and Python's global generators (``set_seed(42)``); their
    states are restored afterwards, so loading the data changes no other random stream.
    """
    # Imported here: the package imports matplotlib.pyplot, which importing jdl should not.
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.shuffle_seq = False  # the shuffle is drawn below, so both variants share the signals
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
        # make_dataset(shuffle_seq=True) draws exactly this permutation at this point of the
        # seeded stream, after the examples and their order.
        positions = np.random.permutation(args.final_seq_length)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = _Arrays(
        x=np.asarray(data["x"], np.float32),
        y=np.asarray(data["y"], np.int32),
        x_test=np.asarray(data["x_test"], np.float32),
        y_test=np.asarray(data["y_test"], np.int32),
        positions=positions,
    )
    shapes = (arrays.x.shape, arrays.x_test.shape)
    if shapes != ((NUM_TRAIN, LENGTH), (NUM_TEST, LENGTH)):
        raise RuntimeError(
            f"mnist1d: the package's generator gave signals of shapes {shapes}, expected "
            f"({NUM_TRAIN}, {LENGTH}) and ({NUM_TEST}, {LENGTH}); its reference arguments changed"
        )
    for a in arrays:
        a.flags.writeable = False
    return arrays


def mnist1d(seed: int = 0, val_fraction: float = 0.1, *, shuffle_positions: bool = False) -> Splits:
    r"""MNIST-1D, a small dataset on which MLPs, CNNs and RNNs differ, as train / val / test.

    Each signal is one of ten hand-made 1-D templates (a digit's shape) put through random
    padding, dilation, scaling, translation, correlated and i.i.d. noise and shear, then
    resampled to 40 positions; the whole set is standardised,
    :math:`x \leftarrow (x - \bar x) / s` with the mean and standard deviation over all signals
    and positions. The reference arguments of the package (``get_dataset_args()``: 5000
    signals, seed 42) give 4000 training and 1000 test signals, balanced over the 10 classes.

    The 1000 reference test signals are the test split; ``val_fraction`` of the 4000 training
    signals, stratified by class (scikit-learn's ``train_test_split`` with
    ``random_state=seed``), are held out for validation. With the defaults: 3600 train / 400
    val / 1000 test. x is float32 of shape (n, 40), y int32 labels in {0, ..., 9}.

    With ``shuffle_positions`` every signal's positions are permuted by one fixed permutation
    :math:`\pi` of {0, ..., 39}, :math:`x'_i = x_{\pi(i)}`, the same for all splits: the
    package's own ``shuffle_seq`` variant. A model that treats inputs as an unordered vector (an
    MLP) cannot tell the difference; one that shares a kernel over neighbouring positions (a
    CNN) loses its prior.

    The signals are generated locally by the ``mnist1d`` package's procedural generator
    (``make_dataset``; nothing is downloaded), once per process (about a second), and cached in
    memory; the global NumPy and Python random states are left as they were.

    Args:
      seed: seed of the train / validation split; the same seed gives the same splits.
      val_fraction: fraction of the 4000 training signals held out for validation, in (0, 1).
      shuffle_positions: permute the 40 positions of every signal by the reference permutation.

    Returns:
      ``Splits(train, val, test)`` of JAX arrays.

    Raises:
      ValueError: a bad ``seed``, ``val_fraction`` or ``shuffle_positions``, or a fraction that
        leaves a split with fewer examples than the 10 classes.

    Example::

      >>> splits = mnist1d()
      >>> splits.train.x.shape, splits.val.x.shape, splits.test.x.shape
      ((3600, 40), (400, 40), (1000, 40))

    References:
      S. Greydanus, D. Kobak, "Scaling Down Deep Learning with MNIST-1D", ICML 2024,
      arXiv:2011.14439; https://github.com/greydanus/mnist1d
    """
    from jdl.data import Splits, _check_fraction, dataset  # jdl.data re-exports this function

    _check_fraction("val_fraction", val_fraction)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if not isinstance(shuffle_positions, bool):
        raise ValueError(f"shuffle_positions must be a bool, got {shuffle_positions!r}")
    arrays = _mnist1d_arrays()
    x, x_test = arrays.x, arrays.x_test
    if shuffle_positions:
        x, x_test = x[:, arrays.positions], x_test[:, arrays.positions]
    try:
        x_train, x_val, y_train, y_val = train_test_split(
            x, arrays.y, test_size=val_fraction, stratify=arrays.y, random_state=seed
        )
    except ValueError as e:
        raise ValueError(
            f"mnist1d: val_fraction={val_fraction} leaves a split with fewer examples than the "
            f"{NUM_CLASSES} classes ({e})"
        ) from None
    variant = "mnist1d (shuffled positions)" if shuffle_positions else "mnist1d"
    return Splits(
        train=dataset(x_train, y_train, name=f"{variant} train split"),
        val=dataset(x_val, y_val, name=f"{variant} validation split"),
        test=dataset(x_test, arrays.y_test, name=f"{variant} test split"),
    )
