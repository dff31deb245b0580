"""Stacked denoising autoencoder: layer-wise pre-training, stacking, fine-tuning."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jdl.data import Dataset
from jdl.models import stacked_classifier
from jdl.run import fine_tune, pretrain_layerwise


def _data(n: int, seed: int) -> Dataset:
    """Two classes of 8-pixel images in [0, 1]: bright left half or bright right half."""
    y = np.arange(n) % 2
    base = np.where((np.arange(8)[None] < 4) == (y[:, None] == 0), 0.85, 0.05)
    noise = 0.1 * np.random.default_rng(seed).uniform(size=(n, 8))
    return Dataset(jnp.asarray(base + noise, jnp.float32), jnp.asarray(y, jnp.int32))


def test_pretraining_stacking_and_fine_tuning():
    train, val = _data(48, 0), _data(16, 1)
    pre = pretrain_layerwise(
        train.x,
        val.x,
        (6, 4),
        noise_levels=(0.3, 0.1),
        optimizer=optax.adam(0.05),
        key=jax.random.key(0),
        batch_size=16,
        steps=60,
        eval_every=20,
        patience=1000,
    )
    assert [e["kernel"].shape for e in pre.encoders] == [(8, 6), (6, 4)]
    assert [e["bias"].shape for e in pre.encoders] == [(6,), (4,)]
    for result in pre.results:  # each stage is a fit run whose training loss went down
        assert result.history["train_loss"][-1] < result.history["train_loss"][0]
        assert result.history["step"][-1] == 60

    apply_fn, params = stacked_classifier((8, 6, 4), 2, encoders=pre.encoders, rngs=nnx.Rngs(3))
    _, random_params = stacked_classifier((8, 6, 4), 2, rngs=nnx.Rngs(3))
    for k, encoder in enumerate(pre.encoders):  # decoders dropped, encoders stacked
        np.testing.assert_array_equal(params["layers"][k]["kernel"], encoder["kernel"])
        np.testing.assert_array_equal(params["layers"][k]["bias"], encoder["bias"])
    # Same softmax-layer initialisation as the random baseline, different hidden layers.
    np.testing.assert_array_equal(
        params["layers"][2]["kernel"], random_params["layers"][2]["kernel"]
    )
    assert not np.allclose(params["layers"][0]["kernel"], random_params["layers"][0]["kernel"])
    # The stack computes sigmoid codes of sigmoid codes, then the softmax layer's logits.
    h = train.x
    for encoder in pre.encoders:
        h = jax.nn.sigmoid(h @ encoder["kernel"] + encoder["bias"][None])
    out = params["layers"][2]
    np.testing.assert_allclose(
        apply_fn(params, train.x), h @ out["kernel"] + out["bias"][None], rtol=1e-5, atol=1e-6
    )

    result = fine_tune(
        apply_fn,
        params,
        train,
        val,
        optimizer=optax.adam(0.05),
        key=jax.random.key(1),
        batch_size=16,
        steps=60,
        eval_every=20,
        patience=1000,
    )
    history = result.history
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_accuracy"][-1] == 1.0  # two well-separated classes


def test_default_is_the_courses_model_and_the_options_remain():
    """Separate W and V, both decayed by lambda (||W||^2 + ||V||^2); tied and bce on request."""
    train, val = _data(32, 0), _data(8, 1)
    common = {
        "noise_levels": (0.2,),
        "optimizer": optax.adam(0.05),
        "key": jax.random.key(0),
        "batch_size": 16,
        "steps": 80,
        "eval_every": 40,
        "patience": 1000,
    }

    def kernels(**kwargs):
        params = pretrain_layerwise(train.x, val.x, (6,), **common, **kwargs).results[0]
        params = params.state.params
        return params["f"][0]["kernel"], params["g"][0].get("kernel")

    w, v = kernels(weight_decay=0.0)
    assert v.shape == (6, 8) and not np.allclose(v, w.T)  # an untied decoder
    w_decayed, v_decayed = kernels(weight_decay=0.5)
    # The decay pulls both kernels towards 0 (Adam's steps are at most 0.05 each).
    assert np.linalg.norm(w_decayed) < 0.5 * np.linalg.norm(w)
    assert np.linalg.norm(v_decayed) < 0.5 * np.linalg.norm(v)
    _, none = kernels(tied=True, reconstruction="bce")
    assert none is None  # tied: the decoder uses W^T and keeps only its bias


def test_bad_arguments_raise_clear_errors():
    x = jnp.zeros((8, 4))
    common = {"optimizer": optax.sgd(0.1), "key": jax.random.key(0)}
    with pytest.raises(ValueError, match="one level per layer"):
        pretrain_layerwise(x, x, (3, 2), noise_levels=(0.1,), **common)
    with pytest.raises(ValueError, match="noise must be one of"):
        pretrain_layerwise(x, x, (3,), noise_levels=(0.1,), noise="blur", **common)
    with pytest.raises(ValueError, match="noise level"):
        pretrain_layerwise(x, x, (3,), noise_levels=(1.5,), **common)
    with pytest.raises(ValueError, match="train_x and val_x"):
        pretrain_layerwise(x, jnp.zeros((8, 5)), (3,), noise_levels=(0.1,), **common)
    with pytest.raises(ValueError, match="encoder 0 must have kernel"):
        stacked_classifier(
            (4, 3),
            2,
            encoders=[{"kernel": jnp.zeros((3, 3)), "bias": jnp.zeros(3)}],
            rngs=nnx.Rngs(0),
        )
    with pytest.raises(ValueError, match="one layer per hidden size"):
        stacked_classifier((4, 3, 2), 2, encoders=[], rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_classes"):
        stacked_classifier((4, 3), 1, rngs=nnx.Rngs(0))
