"""Autoencoder, TiedDense and the autoencoder objectives: shapes, sharing, gradients, training."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.test_util import check_grads

from jdl import augment
from jdl.data import Dataset
from jdl.models import functional
from jdl.models.autoencoder import Autoencoder
from jdl.models.autoencoder_losses import (
    autoencoder_loss,
    contractive_loss,
    denoising_loss,
    reconstruction_metrics,
    sparse_loss,
)
from jdl.models.tied import TiedDense


def _batch(n: int = 6, d: int = 8, seed: int = 0) -> Dataset:
    x = jax.random.uniform(jax.random.key(seed), (n, d))
    return Dataset(x, jnp.zeros((n,), jnp.int32))


def test_shapes_structure_and_tied_kernel_stored_once():
    x = _batch().x
    for tied in (False, True):
        ae = Autoencoder((8, 5, 3), code_activation=None, tied=tied, rngs=nnx.Rngs(0))
        h = ae.encode(x)
        assert h.shape == (6, 3) and ae.code_size == 3
        assert ae.decode(h).shape == (6, 8) and ae(x).shape == (6, 8)
        assert bool(jnp.all((ae(x) > 0) & (ae(x) < 1)))  # sigmoid output
        np.testing.assert_allclose(ae(x), jax.nn.sigmoid(ae.decode_preactivation(h)), rtol=1e-6)
        _, params = functional(ae)
        shapes = jax.tree.map(jnp.shape, params)
        assert shapes["f"] == {
            0: {"kernel": (8, 5), "bias": (5,)},
            1: {"kernel": (5, 3), "bias": (3,)},
        }
        if tied:
            assert shapes["g"] == {0: {"bias": (5,)}, 1: {"bias": (8,)}}
            assert ae.g[0].kernel is ae.f[1].kernel
        else:
            assert shapes["g"] == {
                0: {"kernel": (3, 5), "bias": (5,)},
                1: {"kernel": (5, 8), "bias": (8,)},
            }
    # A linear code is unbounded, a sigmoid code lies in (0, 1).
    ae = Autoencoder((8, 3), rngs=nnx.Rngs(0))
    assert bool(jnp.all((ae.encode(x) > 0) & (ae.encode(x) < 1)))
    # TiedDense is x W^T + c.
    enc = nnx.Linear(8, 3, rngs=nnx.Rngs(1))
    dec = TiedDense(enc, rngs=nnx.Rngs(1))
    dec.bias[...] = jnp.arange(8.0)
    h = jnp.ones((2, 3))
    np.testing.assert_allclose(dec(h), h @ enc.kernel[...].T + jnp.arange(8.0)[None], rtol=1e-6)
    assert TiedDense(enc, use_bias=False, rngs=nnx.Rngs(1)).bias is None


def test_tied_gradient_is_the_sum_of_both_uses():
    ae = Autoencoder((8, 3), tied=True, output_activation=None, rngs=nnx.Rngs(0))
    apply_fn, params = functional(ae)
    x = _batch().x

    def tied_loss(p):
        return jnp.sum(apply_fn(p, x) ** 2)

    def untied_loss(w1, w2):  # the same network with the two uses of W separated
        b1, c = params["f"][0]["bias"], params["g"][0]["bias"]
        h = jax.nn.sigmoid(x @ w1 + b1[None])
        return jnp.sum((h @ w2.T + c[None]) ** 2)

    w = params["f"][0]["kernel"]
    g_enc, g_dec = jax.grad(untied_loss, argnums=(0, 1))(w, w)
    grads = jax.grad(tied_loss)(params)
    assert "kernel" not in grads["g"][0]
    np.testing.assert_allclose(grads["f"][0]["kernel"], g_enc + g_dec, rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(g_dec))) > 0  # the decoder's use really contributes


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="features"):
        Autoencoder((8,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="features"):
        Autoencoder((8, 0), rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="code_activation"):
        Autoencoder((8, 3), code_activation="relu", rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="tied_to"):
        TiedDense("W", rngs=nnx.Rngs(0))
    deep_linear = Autoencoder(
        (8, 4, 3), code_activation=None, output_activation=None, rngs=nnx.Rngs(0)
    )
    with pytest.raises(ValueError, match="bce"):
        autoencoder_loss(deep_linear, reconstruction="bce")
    with pytest.raises(ValueError, match="sigmoid"):
        contractive_loss(deep_linear, 0.1, method="sigmoid")
    with pytest.raises(ValueError, match="kl_code"):
        sparse_loss(deep_linear, kl_code=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        denoising_loss(deep_linear, lambda k, x: x, weight_decay=-1.0)
    with pytest.raises(ValueError, match="l1_code > 0"):
        sparse_loss(deep_linear)
    with pytest.raises(ValueError, match="kl_target"):
        autoencoder_loss(Autoencoder((8, 3), rngs=nnx.Rngs(0)), kl_code=1.0, kl_target=1.5)
    with pytest.raises(TypeError, match="Autoencoder"):
        autoencoder_loss(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="fixed key"):
        reconstruction_metrics(deep_linear, corruption=lambda k, x: x)


def test_objectives_match_their_formulas_and_closed_form_contraction():
    ae = Autoencoder((8, 3), rngs=nnx.Rngs(0))
    _, params = functional(ae)
    batch, key = _batch(), jax.random.key(1)
    corrupt = functools.partial(augment.masking_noise, p=0.5)
    objectives = {
        "mse": autoencoder_loss(ae),
        "bce": autoencoder_loss(ae, reconstruction="bce"),
        "sparse": sparse_loss(ae, l1_code=0.3, kl_code=0.2, kl_target=0.1),
        "denoising": denoising_loss(ae, corrupt, weight_decay=0.01),
        "exact": contractive_loss(ae, 0.5, method="exact"),
        "sigmoid": contractive_loss(ae, 0.5, method="sigmoid"),
    }
    estimate = contractive_loss(ae, 0.5, method="estimate")
    evaluate = reconstruction_metrics(ae)

    @jax.jit
    def run(params):
        out = {name: f(params, batch, key) for name, f in objectives.items()}
        keys = jax.random.split(key, 256)
        out["estimate"] = jax.vmap(lambda k: estimate(params, batch, k)[1]["contraction"])(keys)
        out["eval"] = evaluate(params, batch)
        # The formulas, written out: h = s(W1^T x + b1), x_hat = s(W2^T h + b2).
        x = batch.x
        W1, b1 = params["f"][0]["kernel"], params["f"][0]["bias"]
        W2, b2 = params["g"][0]["kernel"], params["g"][0]["bias"]
        h = jax.nn.sigmoid(x @ W1 + b1[None])
        x_hat = jax.nn.sigmoid(h @ W2 + b2[None])
        rho_hat = jnp.mean(h, axis=0)
        x_tilde = corrupt(jax.random.fold_in(key, 0), x)
        x_hat_tilde = jax.nn.sigmoid(jax.nn.sigmoid(x_tilde @ W1 + b1[None]) @ W2 + b2[None])
        jac = jax.vmap(jax.jacrev(lambda xi: jax.nn.sigmoid(xi @ W1 + b1)))(x)
        out["expected"] = {
            "mse": jnp.mean((x - x_hat) ** 2),
            "bce": -jnp.mean(x * jnp.log(x_hat) + (1 - x) * jnp.log(1 - x_hat)),
            "l1": 0.3 * jnp.mean(jnp.sum(h, axis=1)),
            "kl": 0.2 * jnp.sum(0.1 * jnp.log(0.1 / rho_hat) + 0.9 * jnp.log(0.9 / (1 - rho_hat))),
            "changed": jnp.mean(x_tilde != x),
            "denoising": jnp.mean((x - x_hat_tilde) ** 2),  # against the clean x
            "decay": 0.01 * (jnp.sum(W1**2) + jnp.sum(W2**2)),  # lambda(|W1|^2 + |W2|^2)
            "contraction": 0.5 * jnp.mean(jnp.sum(jac**2, axis=(1, 2))),
        }
        return out

    out = run(params)
    expected = out["expected"]
    np.testing.assert_allclose(out["mse"][0], expected["mse"], rtol=1e-5)
    assert set(out["mse"][1]) == {"reconstruction"}
    np.testing.assert_allclose(out["eval"]["loss"], expected["mse"], rtol=1e-5)
    np.testing.assert_allclose(out["bce"][0], expected["bce"], rtol=1e-4)
    loss, aux = out["sparse"]
    np.testing.assert_allclose(aux["l1_code"], expected["l1"], rtol=1e-5)
    np.testing.assert_allclose(aux["kl_code"], expected["kl"], rtol=1e-5)
    np.testing.assert_allclose(loss, expected["mse"] + expected["l1"] + expected["kl"], rtol=1e-5)
    loss, aux = out["denoising"]
    assert float(expected["changed"]) > 0.2
    np.testing.assert_allclose(aux["reconstruction"], expected["denoising"], rtol=1e-5)
    np.testing.assert_allclose(aux["weight_decay"], expected["decay"], rtol=1e-5)
    np.testing.assert_allclose(loss, expected["denoising"] + expected["decay"], rtol=1e-5)
    # Contractive: exact Jacobian == closed form == expectation of the random projection.
    exact = out["exact"][1]["contraction"]
    np.testing.assert_allclose(exact, expected["contraction"], rtol=1e-5)
    np.testing.assert_allclose(out["sigmoid"][1]["contraction"], exact, rtol=1e-5)
    np.testing.assert_allclose(jnp.mean(out["estimate"]), exact, rtol=0.1)


def test_gradients_check_grads():
    deep = Autoencoder((5, 4, 2), code_activation=None, tied=True, rngs=nnx.Rngs(0))
    loss_fn = autoencoder_loss(  # every term, through a deep network with tied weights
        deep,
        corruption=functools.partial(augment.gaussian_noise, sigma=0.1),
        l1_code=0.1,
        contraction=0.3,
        weight_decay=0.01,
    )
    _, params = functional(deep)
    x = np.random.default_rng(0).uniform(size=(4, 5))
    with jax.enable_x64(True):
        params = jax.tree.map(lambda p: np.asarray(p, np.float64), params)
        batch = Dataset(jnp.asarray(x), jnp.zeros(4))
        f = jax.jit(lambda p: loss_fn(p, batch, jax.random.key(2))[0])
        check_grads(f, (params,), order=1, modes=("rev",))


def test_few_steps_of_training_decrease_the_loss_under_jit_and_vmap():
    data = _batch(n=32, d=8, seed=3)
    ae = Autoencoder((8, 12), rngs=nnx.Rngs(0))
    _, params0 = functional(ae)
    tx = optax.adam(0.05)

    def train(coefficient):  # sparse + denoising + contractive + weight decay, one coefficient
        loss_fn = autoencoder_loss(
            ae,
            corruption=functools.partial(augment.salt_and_pepper, p=0.2),
            l1_code=coefficient,
            contraction=coefficient,
            contraction_method="sigmoid",
            weight_decay=coefficient,
        )

        def step(carry, t):
            p, s = carry
            (loss, _), g = jax.value_and_grad(loss_fn, has_aux=True)(
                p, data, jax.random.fold_in(jax.random.key(0), t)
            )
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss

        _, losses = jax.lax.scan(step, (params0, tx.init(params0)), jnp.arange(30))
        return losses

    # Coefficients are data: one compiled program trains a vmapped population of them.
    batched = jax.jit(jax.vmap(train))(jnp.asarray([0.0, 0.01]))
    for losses in batched:
        assert float(losses[-5:].mean()) < 0.8 * float(losses[:5].mean())
    assert not np.allclose(batched[0], batched[1])  # the coefficient reached the loss
