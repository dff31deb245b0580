"""The IDX file format of MNIST: a reader and the MNIST loader, naming the file in every error.

Re-exported by `jdl.data`, which is where users find them.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from jdl.data import Dataset

__all__ = ["load_idx", "mnist"]


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
        except (OSError, EOFError, zlib.error) as e:
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
    from jdl.data import dataset  # jdl.data re-exports this module's functions

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
    return dataset(x, labels.astype(np.int32), name=os.fspath(labels_path), num_classes=10)
