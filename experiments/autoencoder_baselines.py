"""The baselines of the autoencoder comparison: PCA codes and a linear probe on any codes."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.decomposition import PCA

from jdl.losses import accuracy, softmax_cross_entropy
from jdl.optim import adam

NUM_CLASSES = 10


@functools.partial(jax.jit, static_argnames=("iterations",))
def probe(
    train_codes: jax.Array,
    train_y: jax.Array,
    test_codes: jax.Array,
    test_y: jax.Array,
    *,
    iterations: int = 300,
) -> jax.Array:
    """Linear probe: test accuracy of a softmax regression on the standardised codes.

    z = (h - mean) / std (training statistics); minimises the training cross-entropy of
    softmax(W^T z + b) + (1 / 2n) ||W||^2 (scikit-learn's LogisticRegression with C = 1) by
    full-batch Adam; compiled once per code size.
    """
    mean = jnp.mean(train_codes, axis=0, keepdims=True)
    scale = jnp.std(train_codes, axis=0, keepdims=True) + 1e-6
    z_train, z_test = (train_codes - mean) / scale, (test_codes - mean) / scale
    n = train_codes.shape[0]

    def loss(p: dict[str, jax.Array]) -> jax.Array:
        logits = z_train @ p["w"] + p["b"][None]
        return softmax_cross_entropy(logits, train_y) + 0.5 / n * jnp.sum(jnp.square(p["w"]))

    params = {"w": jnp.zeros((train_codes.shape[1], NUM_CLASSES)), "b": jnp.zeros(NUM_CLASSES)}
    tx = adam(0.1)

    def step(carry: tuple, _: None) -> tuple[tuple, None]:
        p, opt_state = carry
        updates, opt_state = tx.update(jax.grad(loss)(p), opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=iterations)
    return accuracy(z_test @ params["w"] + params["b"][None], test_y)


def pca_baseline(splits, corrupted: dict[str, jax.Array], code_size: int) -> dict[str, Any]:
    """PCA with ``code_size`` components: reconstruction MSE and linear probe on its codes."""
    x_train, x_test = np.asarray(splits.train.x), np.asarray(splits.test.x)
    pca = PCA(code_size).fit(x_train)

    def reconstruct(x: np.ndarray) -> np.ndarray:
        return pca.inverse_transform(pca.transform(x))

    mse = {"clean": float(np.mean((reconstruct(x_test) - x_test) ** 2))}
    for name, x_tilde in corrupted.items():
        mse[name] = float(np.mean((reconstruct(np.asarray(x_tilde)) - x_test) ** 2))
    codes = pca.transform(x_test)
    accuracy_on_codes = float(
        probe(
            jnp.asarray(pca.transform(x_train), jnp.float32),
            splits.train.y,
            jnp.asarray(codes, jnp.float32),
            splits.test.y,
        )
    )
    return {
        "mse": mse,
        "probe": accuracy_on_codes,
        "codes": codes,
        "reconstructions": {"clean": reconstruct(x_test)},
    }
