"""Tests of jdl.models.conv: shapes, parameter counts, the correlation sum, functional + vmap."""

import itertools

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
from flax import nnx

from jdl import data as jdl_data
from jdl.models import Conv, ConvNet, functional, stateful
from jdl.optim import adam
from jdl.run import fit
from jdl.train import classification


def count(params):
    return sum(leaf.size for leaf in jax.tree.leaves(params))


def reference_cnn(seed=0, **kwargs):
    """The MNIST-1D reference CNN (Greydanus 2020): three stride-2 convolutions of 25 channels."""
    return ConvNet(
        (40, 1),
        (25, 25, 25),
        10,
        kernel_size=(5, 3, 3),
        strides=2,
        padding=1,
        rngs=nnx.Rngs(seed),
        **kwargs,
    )


def correlation(x, w, b, stride, pad):
    """y[n, i, o] = b[o] + sum_k sum_c w[k, c, o] x_pad[n, stride i + k, c], by loops."""
    x = np.pad(np.asarray(x), ((0, 0), (pad, pad), (0, 0)))
    w, b = np.asarray(w), np.asarray(b)
    K = w.shape[0]
    out = (x.shape[1] - K) // stride + 1
    y = np.zeros((x.shape[0], out, w.shape[2]))
    for n, i, o in itertools.product(range(x.shape[0]), range(out), range(w.shape[2])):
        y[n, i, o] = b[o] + sum(
            w[k, c, o] * x[n, stride * i + k, c] for k in range(K) for c in range(w.shape[1])
        )
    return y


@pytest.mark.parametrize("stride, pad", [(1, 0), (2, 1), (3, 2)])
def test_conv1d_is_the_hand_written_correlation(stride, pad):
    conv = Conv(2, 3, 3, strides=stride, padding=pad, rngs=nnx.Rngs(0))
    conv.bias[...] = jnp.array([0.5, -1.0, 2.0])
    x = jax.random.normal(jax.random.key(1), (2, 7, 2))
    expected = correlation(x, conv.kernel[...], conv.bias[...], stride, pad)
    np.testing.assert_allclose(
        np.asarray(jax.jit(lambda x: conv(x))(x)), expected, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("padding", ["SAME", "VALID", 1])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_matches_lax_convolution(padding, stride):
    conv = Conv(3, 4, 3, strides=stride, padding=padding, spatial_dims=2, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(2), (2, 8, 7, 3))
    pads = padding if isinstance(padding, str) else [(padding, padding)] * 2
    expected = jax.lax.conv_general_dilated(
        x, conv.kernel[...], (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    expected = expected + conv.bias[...].reshape(1, 1, 1, 4)
    np.testing.assert_allclose(jax.jit(lambda x: conv(x))(x), expected, rtol=1e-5, atol=1e-5)


def test_weight_sharing_makes_the_layer_translation_equivariant():
    conv = Conv(1, 4, 5, padding="VALID", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(3), (1, 30, 1))
    shifted = jnp.roll(x, 3, axis=1)
    # Away from the wrapped edge, shifting the input by 3 shifts the output by 3.
    y, y_shifted = jax.jit(lambda a, b: (conv(a), conv(b)))(x, shifted)
    np.testing.assert_allclose(y_shifted[:, 3:], y[:, :-3], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "conv, shape, out",
    [
        (Conv(1, 8, 5, strides=2, padding=1, rngs=nnx.Rngs(0)), (3, 40, 1), (3, 19, 8)),
        (Conv(1, 8, 5, rngs=nnx.Rngs(0)), (3, 40, 1), (3, 40, 8)),
        (Conv(1, 8, 5, padding="VALID", rngs=nnx.Rngs(0)), (3, 40, 1), (3, 36, 8)),
        (Conv(1, 4, 3, strides=2, spatial_dims=2, rngs=nnx.Rngs(0)), (2, 8, 8, 1), (2, 4, 4, 4)),
    ],
)
def test_conv_output_shapes(conv, shape, out):
    assert jax.eval_shape(lambda x: conv(x), jnp.zeros(shape)).shape == out
    assert conv.output_shape(shape[1:-1]) == out[1:-1]


def test_parameter_counts_match_a_hand_count():
    # 1 * 25 * 5 + 25 = 150; 25 * 25 * 3 + 25 = 1900 (twice); lengths 40 -> 19 -> 10 -> 5,
    # head 5 * 25 * 10 + 10 = 1260.
    assert count(functional(reference_cnn())[1]) == 150 + 1900 + 1900 + 1260 == 5210
    # 8x8 digits: 3*3*1*8 + 8 = 80, pool -> 4x4; 3*3*8*16 + 16 = 1168, pool -> 2x2;
    # hidden 2*2*16*32 + 32 = 2080; output 32 * 10 + 10 = 330.
    cnn = ConvNet((8, 8, 1), (8, 16), 10, pool_size=2, hidden=(32,), rngs=nnx.Rngs(0))
    assert count(functional(cnn)[1]) == 80 + 1168 + 2080 + 330
    assert jax.eval_shape(lambda x: cnn(x), jnp.zeros((5, 64))).shape == (5, 10)
    assert jax.eval_shape(lambda x: cnn(x), jnp.zeros((5, 8, 8, 1))).shape == (5, 10)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_pooling_takes_the_window_max_or_mean(pool):
    cnn = ConvNet((6, 1), (1,), 1, kernel_size=1, pool_size=2, pool=pool, rngs=nnx.Rngs(0))
    cnn.convs[0].kernel[...] = jnp.ones((1, 1, 1))
    cnn.head[0].kernel[...] = jnp.array([[1.0], [10.0], [100.0]])
    x = jnp.array([[1.0, 3.0, 2.0, 0.0, 5.0, 4.0]])
    pooled = [3.0, 2.0, 5.0] if pool == "max" else [2.0, 1.0, 4.5]
    np.testing.assert_allclose(cnn(x), [[pooled[0] + 10 * pooled[1] + 100 * pooled[2]]])


def test_functional_and_vmap_over_parameters():
    apply_fn, _ = functional(reference_cnn())
    params = [functional(reference_cnn(seed))[1] for seed in range(3)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *params)
    x = jax.random.normal(jax.random.key(0), (4, 40))
    batched = jax.jit(jax.vmap(apply_fn, in_axes=(0, None)))(stacked, x)
    assert batched.shape == (3, 4, 10)
    one = jax.jit(apply_fn)
    for i, p in enumerate(params):
        np.testing.assert_allclose(batched[i], one(p, x), rtol=1e-5, atol=1e-5)
    assert not np.allclose(batched[0], batched[1])
    grads = jax.jit(jax.vmap(jax.grad(lambda p: apply_fn(p, x).sum())))(stacked)
    assert grads["convs"][0]["kernel"].shape == (3, 5, 1, 25)
    assert np.all(np.isfinite(jax.tree.leaves(grads)[0]))


def test_dropout_only_in_training_mode():
    apply_fn, params = functional(reference_cnn(dropout_rate=0.5))
    apply_fn = jax.jit(apply_fn)
    x = jax.random.normal(jax.random.key(0), (4, 40))
    np.testing.assert_array_equal(apply_fn(params, x), apply_fn(params, x))
    a = apply_fn(params, x, key=jax.random.key(1))
    b = apply_fn(params, x, key=jax.random.key(2))
    assert not np.allclose(a, b) and not np.allclose(a, apply_fn(params, x))


def test_batch_norm_goes_through_stateful_as_in_nnx():
    cnn = reference_cnn(batch_norm=True)
    apply_fn, variables = stateful(cnn)  # before the NNX call below changes cnn's statistics
    x = jax.random.normal(jax.random.key(0), (8, 40))
    before = cnn.norms[0].mean[...]
    y = cnn(x)  # NNX training mode: batch statistics, running ones updated in place
    assert not np.allclose(cnn.norms[0].mean[...], before)
    y_jdl, new = jax.jit(apply_fn)(*variables, x, key=jax.random.key(1))
    np.testing.assert_allclose(y_jdl, y, rtol=1e-5, atol=1e-6)
    for i, norm in enumerate(cnn.norms):
        np.testing.assert_allclose(new["norms"][i]["mean"], norm.mean[...], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(new["norms"][i]["var"], norm.var[...], rtol=1e-5, atol=1e-7)
    cnn.eval()  # evaluation mode: the running statistics
    y_eval, same = jax.jit(apply_fn)(variables.params, new, x)
    np.testing.assert_allclose(y_eval, cnn(x), rtol=1e-5, atol=1e-6)
    assert same is not None and not np.allclose(y_eval, y_jdl)
    with pytest.raises(TypeError, match="stateful"):
        functional(cnn)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_shape": (40,)}, "input_shape"),
        ({"channels": ()}, "channels"),
        ({"kernel_size": (5, 3)}, "kernel_size"),
        ({"strides": 0}, "strides"),
        ({"pool": "median"}, "pool"),
        ({"dropout_rate": 1.0}, "dropout_rate"),
        ({"padding": "FULL"}, "padding"),
        ({"pool_size": 8}, "too small"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"input_shape": (40, 1), "channels": (4, 4, 4), "num_outputs": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        ConvNet(
            args.pop("input_shape"),
            args.pop("channels"),
            args.pop("num_outputs"),
            rngs=nnx.Rngs(0),
            **args,
        )


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"\(N, 40, 1\) or \(N, 40\)"):
        reference_cnn()(jnp.zeros((2, 41)))


@pytest.mark.parametrize("input_shape", [(9, 2), (5, 5, 2)])
def test_gradients_match_finite_differences(input_shape):
    with jax.enable_x64(True):
        # tanh: smooth, so finite differences are accurate everywhere.
        cnn = ConvNet(input_shape, (3, 2), 2, strides=(1, 2), activation=jnp.tanh, rngs=nnx.Rngs(0))
        apply_fn, params = functional(cnn)
        params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        x = jax.random.normal(jax.random.key(0), (2, *input_shape), jnp.float64)
        jax.test_util.check_grads(
            lambda p: apply_fn(p, x), (params,), order=1, modes=("rev",), atol=1e-6, rtol=1e-6
        )


def test_a_few_steps_of_fit_lower_the_loss():
    splits = jdl_data.mnist1d()
    train = jdl_data.Dataset(splits.train.x[:512], splits.train.y[:512])
    apply_fn, params = functional(reference_cnn())
    loss_fn, eval_fn = classification(apply_fn)
    before = float(eval_fn(params, train)["loss"])
    result = fit(
        loss_fn,
        params,
        adam(1e-2),
        train,
        splits.val,
        eval_fn=eval_fn,
        steps=40,
        batch_size=64,
        eval_every=40,
        progress=False,
    )
    assert float(eval_fn(result.state.params, train)["loss"]) < 0.8 * before
