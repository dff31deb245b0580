"""Tests of jdl.data.mnist1d: the reference signals, splits, determinism and the shuffle."""

import random
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from mnist1d.data import get_dataset_args, make_dataset

from jdl import data as jd
from jdl import mnist_1d


@pytest.fixture(scope="module")
def reference():
    """The package's own shuffled dataset, generated from its reference arguments."""
    args = get_dataset_args()
    args.shuffle_seq = True
    return make_dataset(args)


def test_shapes_dtypes_labels_and_balance():
    splits = jd.mnist1d()
    assert [d.x.shape for d in splits] == [(3600, 40), (400, 40), (1000, 40)]
    for d in splits:
        assert d.x.dtype == jnp.float32 and d.y.dtype == jnp.int32
        assert set(np.unique(np.asarray(d.y))) == set(range(10))
    # Standardised over all 5000 signals and positions, the train split nearly so.
    x = np.asarray(splits.train.x)
    assert abs(x.mean()) < 0.05 and abs(x.std() - 1.0) < 0.05
    # Stratified: each class keeps about 10% of its ~400 training signals for validation.
    counts = np.bincount(np.asarray(splits.val.y), minlength=10)
    assert counts.min() >= 38 and counts.max() <= 42


def test_splits_partition_the_reference_training_signals(reference):
    splits = jd.mnist1d(shuffle_positions=True)
    train_val = np.concatenate([np.asarray(splits.train.x), np.asarray(splits.val.x)])
    # The same 4000 signals, in another order: compare sorted rows.
    order = np.lexsort(train_val.T[::-1])
    ref_order = np.lexsort(reference["x"].T[::-1])
    np.testing.assert_allclose(train_val[order], reference["x"][ref_order], atol=1e-5)
    np.testing.assert_allclose(np.asarray(splits.test.x), reference["x_test"], atol=1e-5)
    np.testing.assert_array_equal(np.asarray(splits.test.y), reference["y_test"])


def test_deterministic_and_seeded():
    a, b, c = jd.mnist1d(seed=0), jd.mnist1d(seed=0), jd.mnist1d(seed=1)
    for da, db in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(da.x), np.asarray(db.x))
        np.testing.assert_array_equal(np.asarray(da.y), np.asarray(db.y))
    assert not np.array_equal(np.asarray(a.val.x), np.asarray(c.val.x))
    np.testing.assert_array_equal(np.asarray(a.test.x), np.asarray(c.test.x))


def test_leaves_the_global_random_states_alone():
    mnist_1d._mnist1d_arrays.cache_clear()
    np.random.seed(123)
    random.seed(123)
    jd.mnist1d()
    assert np.random.rand() == np.random.RandomState(123).rand()
    assert random.random() == random.Random(123).random()


def test_shuffled_variant_is_one_permutation_of_positions():
    plain, shuffled = jd.mnist1d(), jd.mnist1d(shuffle_positions=True)
    x = np.asarray(plain.train.x)
    xs = np.asarray(shuffled.train.x)
    assert not np.array_equal(x, xs)
    # Recover pi column by column: x'_i = x_pi(i), one and the same pi for every split.
    pi = np.array([np.flatnonzero((x == xs[:, [i]]).all(axis=0))[0] for i in range(40)])
    assert sorted(pi) == list(range(40)) and not np.array_equal(pi, np.arange(40))
    for p, s in zip(plain, shuffled, strict=True):
        np.testing.assert_array_equal(np.asarray(p.x)[:, pi], np.asarray(s.x))
        np.testing.assert_array_equal(np.asarray(p.y), np.asarray(s.y))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": 0.001}, "fewer examples than the 10 classes"),
        ({"seed": 1.5}, "seed"),
        ({"shuffle_positions": 1}, "shuffle_positions"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jd.mnist1d(**kwargs)


def test_importing_jdl_loads_neither_the_generator_nor_pyplot():
    code = (
        "import sys, jdl.data; print('mnist1d' in sys.modules, 'matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_reference_values_of_the_generated_signals():
    # Values of mnist1d 0.0.2.post1's reference dataset: a change of the package's generator
    # (which would change every number in the README's table) shows here.
    test = jd.mnist1d().test
    assert np.asarray(test.y[:12]).tolist() == [2, 6, 3, 9, 4, 3, 1, 9, 5, 2, 0, 7]
    np.testing.assert_allclose(
        np.asarray(test.x[0, :6]),
        [-0.07877, -0.21073, -0.09175, 0.28267, 0.32606, 0.03843],
        atol=1e-4,
    )
    assert float(np.abs(np.asarray(test.x)).sum()) == pytest.approx(29977.88, rel=1e-5)
