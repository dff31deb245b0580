"""No silent wrong results: labels out of range and non-finite inputs are errors where data
enters (the data constructors, the IDX loader, fit), never a run that trains or "diverges"."""

import gzip
import struct

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jdl
from jdl.data import Dataset, check_labels, dataset, mnist, synthetic_classification

SPLITS = jdl.data.digits()


@pytest.fixture(scope="module")
def model():
    apply_fn, params = jdl.models.functional(jdl.models.MLP((64, 8, 10), rngs=nnx.Rngs(0)))
    return apply_fn, params


def _fit(model, train, val, **kwargs):
    apply_fn, params = model
    loss_fn, eval_fn = jdl.train.classification(apply_fn, **kwargs)
    return jdl.fit(
        loss_fn,
        params,
        jdl.optim.adam(1e-3),
        train,
        val,
        eval_fn=eval_fn,
        steps=4,
        batch_size=8,
        eval_every=2,
        progress=False,
    )


@pytest.mark.parametrize(
    ("which", "label", "message"),
    [
        ("train", -1, r"train labels: label -1 \(example 3\) is outside \[0, 9\]"),
        ("train", 10, r"train labels: label 10 \(example 3\) is outside \[0, 9\]"),
        ("train", 15, r"train labels: label 15 .* of 10 outputs"),
        ("val", 12, r"val labels: label 12 \(example 3\)"),
    ],
)
def test_fit_refuses_labels_outside_the_models_outputs(model, which, label, message):
    data = {"train": SPLITS.train, "val": SPLITS.val}
    data[which] = Dataset(data[which].x, data[which].y.at[3].set(label))
    with pytest.raises(ValueError, match=message):
        _fit(model, data["train"], data["val"])


def test_an_explicit_number_of_classes_is_checked_too(model):
    with pytest.raises(ValueError, match=r"label 9 \(example \d+\) is outside \[0, 8\]"):
        _fit(model, SPLITS.train, SPLITS.val, num_classes=9)
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        jdl.train.classification(model[0], num_classes=0)
    assert _fit(model, SPLITS.train, SPLITS.val).history["step"] == [2, 4]  # valid labels train


@pytest.mark.parametrize(
    ("which", "field", "value"),
    [("train", "x", jnp.nan), ("train", "x", jnp.inf), ("val", "x", -jnp.inf)],
)
def test_fit_refuses_non_finite_inputs_of_a_dataset_built_directly(model, which, field, value):
    data = {"train": SPLITS.train, "val": SPLITS.val}
    data[which] = data[which]._replace(x=data[which].x.at[5, 7].set(value))
    with pytest.raises(ValueError, match=rf"{which}\.{field} has 1 non-finite values"):
        _fit(model, data["train"], data["val"])


@pytest.mark.parametrize(
    ("y", "classes", "message"),
    [
        ([0, 1, -1], 3, r"label -1 \(example 2\) is outside \[0, 2\]"),
        ([0, 3, 1], 3, r"label 3 \(example 1\) is outside \[0, 2\]"),
        ([[0, 1], [9, 1]], 4, r"label 9 \(example 1\)"),
        ([0.0, 1.0, 2.0], 3, "must be integers, got dtype float"),
    ],
)
def test_check_labels_names_the_value_and_the_range(y, classes, message):
    with pytest.raises(ValueError, match=message):
        check_labels(np.asarray(y), classes, name="y")
    with pytest.raises(ValueError, match=message):
        dataset(np.zeros((len(y), 2)), np.asarray(y), num_classes=classes)


def test_data_constructors_check_their_labels():
    check_labels(SPLITS.train.y, 10)  # digits: in range
    data = synthetic_classification(0, n=30, n_classes=3)
    check_labels(data.y, 3)
    assert dataset(np.zeros((2, 2)), np.array([0, 1]), num_classes=2).y.shape == (2,)


def _idx(array: np.ndarray, code: int) -> bytes:
    head = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return head + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_mnist_labels_out_of_range_name_the_file(tmp_path):
    images = tmp_path / "images.idx"
    labels = tmp_path / "labels.idx"
    images.write_bytes(_idx(np.zeros((3, 2, 2), np.uint8), 0x08))
    labels.write_bytes(_idx(np.array([1, 10, 2], np.uint8), 0x08))
    with pytest.raises(ValueError, match=rf"{labels}: y: label 10 \(example 1\)"):
        mnist(images, labels)


@pytest.mark.parametrize("damage", ["deflate", "crc", "truncated"])
def test_a_corrupt_gzip_is_a_value_error_naming_the_file(tmp_path, damage):
    packed = bytearray(gzip.compress(_idx(np.arange(200, dtype=np.uint8), 0x08)))
    if damage == "deflate":
        packed[12:20] = b"\xff" * 8  # invalid compressed data (zlib.error)
    elif damage == "crc":
        packed[-8] ^= 0xFF  # the stored CRC no longer matches
    else:
        packed = packed[: len(packed) // 2]
    path = tmp_path / "corrupt.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(ValueError, match=rf"{path}: corrupt or truncated gzip stream"):
        jdl.data.load_idx(path)
