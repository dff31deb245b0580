"""Tests of jdl.data: loaders, boundary checks, IDX files and compiled mini-batches."""

import gzip
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from jdl import data as jd


def write_idx(path, array, code, *, ndim=None, extra=b"", cut=0, compress=False):
    """Writes ``array`` as an IDX file built by hand from the format's description."""
    array = np.asarray(array)
    ndim = array.ndim if ndim is None else ndim
    payload = bytes([0, 0, code, ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    payload += array.astype(array.dtype.newbyteorder(">")).tobytes() + extra
    payload = payload[: len(payload) - cut]
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


# --- digits -----------------------------------------------------------------------------------


def test_digits_matches_sklearn_split_and_is_stratified():
    splits = jd.digits()
    train, val, test = splits
    assert (train.x.shape, val.x.shape, test.x.shape) == ((1077, 64), (270, 64), (450, 64))
    for d in splits:
        assert d.x.dtype == jnp.float32 and d.y.dtype == jnp.int32
        assert isinstance(d.x, jax.Array) and isinstance(d.y, jax.Array)
        assert float(d.x.min()) == 0.0 and float(d.x.max()) == 1.0
    bunch = load_digits()
    _, x_test, y_rest, y_test = train_test_split(
        bunch.data / 16.0, bunch.target, test_size=0.25, stratify=bunch.target, random_state=0
    )
    np.testing.assert_allclose(np.asarray(test.x), x_test, rtol=1e-7)
    np.testing.assert_array_equal(np.asarray(test.y), y_test)
    # Validation is drawn from the remaining 1347: train + val hold exactly those examples.
    rest = np.concatenate([np.asarray(train.y), np.asarray(val.y)])
    np.testing.assert_array_equal(np.sort(rest), np.sort(y_rest))
    # Stratified: each class's share of every split is within one example of its overall share.
    overall = np.bincount(bunch.target) / bunch.target.size
    for d in splits:
        counts = np.bincount(np.asarray(d.y), minlength=10)
        assert np.all(np.abs(counts - overall * d.y.shape[0]) <= 1.0)
    # Same seed, same splits; another seed, other splits.
    again = jd.digits(seed=0)
    np.testing.assert_array_equal(np.asarray(again.val.x), np.asarray(val.x))
    other = jd.digits(seed=1)
    assert not np.array_equal(np.asarray(other.test.x), np.asarray(test.x))
    small = jd.digits(val_fraction=0.5, test_fraction=0.5)
    assert (small.train.y.shape[0], small.val.y.shape[0], small.test.y.shape[0]) == (449, 449, 899)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"test_fraction": True}, "test_fraction"),
        ({"test_fraction": "0.2"}, "test_fraction"),
        ({"test_fraction": 0.999}, "fewer examples than the 10 classes"),
        ({"val_fraction": 0.001}, "fewer examples than the 10 classes"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_digits_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jd.digits(**kwargs)


# --- boundary checks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (np.zeros((3, 2)), np.zeros(4), "mismatched lengths, x has 3 examples but y has 4"),
        (np.zeros((0, 2)), np.zeros(0), "empty"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), np.zeros(2), "x has 1 non-finite.*example 0"),
        (np.zeros((2, 2)), np.array([1.0, np.inf]), "y has 1 non-finite.*example 1"),
        (np.float32(1.0), np.zeros(1), "x must have a leading example axis"),
        (np.zeros((2, 2)), np.array(["a", "b"]), "y must be numeric"),
    ],
)
def test_dataset_says_which_problem(x, y, match):
    with pytest.raises(ValueError, match=match):
        jd.dataset(x, y, name="my data")
    with pytest.raises(ValueError, match=r"^my data: "):
        jd.dataset(x, y, name="my data")


def test_dataset_converts_to_jax_arrays():
    d = jd.dataset(np.ones((3, 2), np.float32), np.arange(3, dtype=np.int32))
    assert isinstance(d, jd.Dataset) and isinstance(d.x, jax.Array) and isinstance(d.y, jax.Array)
    assert d.x.shape == (3, 2) and d.y.dtype == jnp.int32


# --- minibatch --------------------------------------------------------------------------------


def test_minibatch_epochs_under_jit_and_vmap_with_traced_step():
    n, batch_size, epochs = 10, 3, 3  # 3 batches per epoch, 1 example left over each epoch
    data = jd.Dataset(jnp.arange(n, dtype=jnp.float32)[:, None], 100 + jnp.arange(n))

    @jax.jit
    @jax.vmap  # a population of data streams, one key per member
    def all_batches(key):
        def body(carry, step):
            return carry, jd.minibatch(data, key, step, batch_size)

        batches = jax.lax.scan(body, None, jnp.arange(3 * epochs, dtype=jnp.int32))[1]
        # The contract's permutation of each epoch, written out independently.
        perms = [jax.random.permutation(jax.random.fold_in(key, e), n) for e in range(epochs)]
        return batches, jnp.stack(perms)

    keys = jnp.stack([jax.random.key(42), jax.random.key(43), jax.random.key(42)])
    batches, perms = all_batches(keys)
    assert batches.x.shape == (3, 3 * epochs, batch_size, 1)
    idx = np.asarray(batches.x[..., 0]).astype(int)
    np.testing.assert_array_equal(np.asarray(batches.y), 100 + idx)  # x and y stay paired
    for member in range(2):
        seen = []
        for e in range(epochs):
            epoch_idx = idx[member, 3 * e : 3 * e + 3].ravel()
            assert len(set(epoch_idx)) == 9  # each example at most once per epoch, tail dropped
            np.testing.assert_array_equal(epoch_idx, np.asarray(perms[member, e, :9]))
            seen.append(tuple(epoch_idx))
        assert len(set(seen)) == epochs  # a new permutation every epoch
    np.testing.assert_array_equal(idx[2], idx[0])  # deterministic per key
    assert not np.array_equal(idx[1], idx[0])  # another key, other batches


@pytest.mark.parametrize(
    ("batch_size", "match"),
    [(11, "between 1 and the 10 examples"), (0, "between 1"), (2.0, "Python int")],
)
def test_minibatch_rejects_bad_batch_size(batch_size, match):
    data = jd.Dataset(jnp.zeros((10, 2)), jnp.zeros(10))
    with pytest.raises(ValueError, match=match):
        jd.minibatch(data, jax.random.key(0), 0, batch_size)


def test_minibatch_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same leading length"):
        jd.minibatch(jd.Dataset(jnp.zeros((10, 2)), jnp.zeros(9)), jax.random.key(0), 0, 2)


# --- IDX files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "code"),
    [
        (np.uint8, 0x08),
        (np.int8, 0x09),
        (np.int16, 0x0B),
        (np.int32, 0x0C),
        (np.float32, 0x0D),
        (np.float64, 0x0E),
    ],
)
def test_load_idx_reads_every_type_raw_and_gzip(tmp_path, dtype, code):
    base = np.arange(24).reshape(2, 3, 4)
    values = (base * 10 if dtype == np.uint8 else base * 7 - 50).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        values += 0.25  # fractions survive
    for compress in (False, True):
        path = write_idx(tmp_path / f"a{compress}.idx", values, code, compress=compress)
        out = jd.load_idx(path)
        assert out.dtype == np.dtype(dtype) and out.dtype.isnative
        np.testing.assert_array_equal(out, values)


def test_load_idx_vector(tmp_path):
    out = jd.load_idx(write_idx(tmp_path / "v", np.array([7, 0, 255], np.uint8), 0x08))
    np.testing.assert_array_equal(out, [7, 0, 255])


@pytest.mark.parametrize(
    ("write", "match"),
    [
        (lambda p: p.write_bytes(b"\x01\x00\x08\x01" + b"\x00" * 8), "two zero bytes"),
        (lambda p: p.write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x00"), "type code 0x07"),
        (lambda p: p.write_bytes(b"\x00\x00\x08\x00"), "0 dimensions"),
        (lambda p: p.write_bytes(b"\x00\x00"), "too short"),
        (lambda p: p.write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x02"), "truncated header"),
        (lambda p: write_idx(p, np.zeros((2, 3), np.int16), 0x0B, cut=1), "truncated, shape"),
        (lambda p: write_idx(p, np.zeros((2, 3), np.uint8), 0x08, ndim=1), "trailing data"),
        (lambda p: write_idx(p, np.zeros(4, np.uint8), 0x08, extra=b"\x00"), "1 bytes of trailing"),
        (lambda p: p.write_bytes(gzip.compress(b"\x00\x00\x08\x01" * 9)[:-6]), "gzip"),
        (
            lambda p: write_idx(p, np.zeros((2, 2), np.float32), 0x0D, cut=3, compress=True),
            "truncated",
        ),
    ],
)
def test_load_idx_rejects_corrupt_files(tmp_path, write, match):
    path = tmp_path / "bad.idx"
    write(path)
    with pytest.raises(ValueError, match=match):
        jd.load_idx(path)


def test_load_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        jd.load_idx(tmp_path / "missing.idx")


def test_mnist_pair(tmp_path):
    images = np.arange(3 * 2 * 2, dtype=np.uint8).reshape(3, 2, 2) * 20
    labels = np.array([3, 1, 4], np.uint8)
    img = write_idx(tmp_path / "img.gz", images, 0x08, compress=True)
    lab = write_idx(tmp_path / "lab", labels, 0x08)
    d = jd.mnist(img, lab)
    assert d.x.shape == (3, 4) and d.x.dtype == jnp.float32 and d.y.dtype == jnp.int32
    np.testing.assert_allclose(np.asarray(d.x), images.reshape(3, 4) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(d.y), labels)
    with pytest.raises(ValueError, match="mismatched lengths, x has 3 examples but y has 2"):
        jd.mnist(img, write_idx(tmp_path / "lab2", labels[:2], 0x08))
    with pytest.raises(ValueError, match="expected uint8 images"):
        jd.mnist(lab, lab)
    with pytest.raises(ValueError, match="expected uint8 labels"):
        jd.mnist(img, write_idx(tmp_path / "lab3", labels.astype(np.int32), 0x0C))


# --- synthetic data and subsets ---------------------------------------------------------------


def test_synthetic_regression():
    d = jd.synthetic_regression(0, 2000, n_features=3, noise_std=0.0)
    assert d.x.shape == (2000, 3) and d.y.shape == (2000, 1) and d.x.dtype == jnp.float32
    assert float(jnp.abs(d.x).max()) <= 1.0
    f = np.mean(np.sin(np.pi * np.asarray(d.x)), axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(d.y), f, atol=1e-6)
    noisy = jd.synthetic_regression(jax.random.key(0), 2000, n_features=3, noise_std=0.5)
    np.testing.assert_array_equal(np.asarray(noisy.x), np.asarray(d.x))  # int seed == key(seed)
    assert abs(np.std(np.asarray(noisy.y) - f) - 0.5) < 0.03


def test_synthetic_classification():
    d = jd.synthetic_classification(1, 30, n_classes=3, n_features=4, separation=10.0)
    assert d.x.shape == (30, 4) and d.y.shape == (30,) and d.y.dtype == jnp.int32
    y = np.asarray(d.y)
    np.testing.assert_array_equal(y, np.arange(30) % 3)  # balanced, interleaved
    # Far-apart centres: every example is nearer its own class mean than any other.
    x = np.asarray(d.x)
    means = np.stack([x[y == c].mean(0) for c in range(3)])
    nearest = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(nearest, y)
    again = jd.synthetic_classification(1, 30, n_classes=3, n_features=4, separation=10.0)
    np.testing.assert_array_equal(np.asarray(again.x), x)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: jd.synthetic_regression(0, 0), "n must be an int >= 1"),
        (lambda: jd.synthetic_regression(0, 5, n_features=0), "n_features"),
        (lambda: jd.synthetic_regression(0, 5, noise_std=-1.0), "noise_std"),
        (lambda: jd.synthetic_regression(0, 5, noise_std=float("nan")), "noise_std"),
        (lambda: jd.synthetic_classification(0, 5, n_classes=1), "n_classes must be an int >= 2"),
        (lambda: jd.synthetic_classification(0, 2, n_classes=3), "n must be an int >= 3"),
        (lambda: jd.synthetic_classification(0, 5, separation=-2.0), "separation"),
    ],
)
def test_synthetic_rejects_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_stratified_subset():
    train = jd.digits().train
    sub = jd.stratified_subset(train, 200, seed=3)
    assert sub.x.shape == (200, 64) and sub.y.dtype == jnp.int32
    counts = np.bincount(np.asarray(sub.y), minlength=10)
    share = np.bincount(np.asarray(train.y), minlength=10) / train.y.shape[0]
    assert np.all(np.abs(counts - 200 * share) <= 1.0)
    # Rows come from the data, paired with their labels.
    rows = dict(zip(map(tuple, np.asarray(train.x)), np.asarray(train.y).tolist(), strict=True))
    pairs = zip(map(tuple, np.asarray(sub.x)), np.asarray(sub.y).tolist(), strict=True)
    assert all(rows[r] == c for r, c in pairs)
    again = jd.stratified_subset(train, 200, seed=3)
    np.testing.assert_array_equal(np.asarray(again.x), np.asarray(sub.x))
    assert jd.stratified_subset(train, train.y.shape[0]) is train
    with pytest.raises(ValueError, match="between the number of classes"):
        jd.stratified_subset(train, 5)
    with pytest.raises(ValueError, match="between the number of classes"):
        jd.stratified_subset(train, 5000)
    with pytest.raises(ValueError, match="integer class labels"):
        jd.stratified_subset(jd.Dataset(train.x, train.x[:, 0]), 20)


def test_standardize_uses_the_training_statistics_and_keeps_constant_features_finite():
    rng = np.random.default_rng(0)
    x_train = rng.normal(3.0, 2.0, (50, 4)).astype(np.float32)
    x_train[:, 1] = 0.0  # a constant feature (a border pixel)
    x_train[:, 2] = 0.3  # constant, not exactly representable: its float32 std is ~0, not 0
    x_val = rng.normal(0.0, 1.0, (7, 4)).astype(np.float32)
    x_test = rng.normal(0.0, 1.0, (5, 4)).astype(np.float32)
    splits = jd.Splits(*(jd.dataset(x, np.arange(len(x)) % 3) for x in (x_train, x_val, x_test)))
    out = jax.jit(jd.standardize)(splits)
    # Closed form in float64: the train statistics, s = 1 for the constant features.
    mu = x_train.astype(np.float64).mean(0)
    s = x_train.astype(np.float64).std(0)
    s[1:3] = 1.0
    for got, x in zip(out, (x_train, x_val, x_test), strict=True):
        np.testing.assert_allclose(got.x, (x - mu) / s, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.mean(out.train.x, 0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.std(np.asarray(out.train.x), 0)[[0, 3]], 1.0, rtol=1e-5)
    np.testing.assert_allclose(out.train.x[:, 1:3], 0.0, atol=1e-6)
    for got, orig in zip(out, splits, strict=True):
        np.testing.assert_array_equal(got.y, orig.y)
    # The validation split is not standardized by its own statistics.
    assert (
        abs(float(np.mean(out.val.x[:, 0])) - (float(np.mean(x_val[:, 0])) - mu[0]) / s[0]) < 1e-4
    )
