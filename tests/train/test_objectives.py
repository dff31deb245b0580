"""classification: hand-computed cross-entropy and accuracy, the dropout key reaches apply_fn."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdl.data import Dataset
from jdl.train import classification


def test_loss_and_metrics_by_hand_and_key_passes_through():
    seen = []

    def apply_fn(params, x, *, key=None):
        seen.append(key)
        logits = x @ params["w"]
        # Training mode (a key): a key-dependent shift of the logits, so the key must matter.
        return logits if key is None else logits + jax.random.normal(key, logits.shape)

    params = {"w": jnp.eye(2, dtype=jnp.float32)}
    data = Dataset(jnp.array([[math.log(3.0), 0.0], [0.0, 0.0]]), jnp.array([0, 1], jnp.int32))
    loss_fn, eval_fn = classification(apply_fn)

    metrics = eval_fn(params, data)
    assert seen == [None]  # evaluation: no key, deterministic
    # example 1: softmax(ln 3, 0) = (3/4, 1/4), label 0 -> -log(3/4); example 2: (1/2, 1/2)
    expected = (-math.log(0.75) - math.log(0.5)) / 2
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-6)
    assert set(metrics) == {"loss", "accuracy"}
    # argmax of (0, 0) is class 0, the label is 1: one of two correct.
    np.testing.assert_allclose(metrics["accuracy"], 0.5)

    key = jax.random.key(3)
    loss, aux = jax.jit(loss_fn)(params, data, key)
    assert aux == {} and seen[-1] is not None
    shifted = data.x @ params["w"] + jax.random.normal(key, (2, 2))
    log_p = jax.nn.log_softmax(shifted)
    np.testing.assert_allclose(loss, -(log_p[0, 0] + log_p[1, 1]) / 2, rtol=1e-5)
    assert not np.isclose(loss, expected)  # the key changed the logits
    np.testing.assert_allclose(jax.jit(loss_fn)(params, data, key)[0], loss)  # same key, same


def test_rejects_a_non_callable():
    with pytest.raises(TypeError, match="apply_fn"):
        classification({"w": 1.0})
