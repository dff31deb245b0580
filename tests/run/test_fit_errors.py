"""fit's boundary: a model, loss or evaluation that does not fit the data gets a clear error
naming the function and its inputs, found with ``jax.eval_shape`` before anything compiles."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jdl.data import Dataset
from jdl.models.functional import functional
from jdl.models.mlp import MLP
from jdl.run import fit

RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.standard_normal((32, 4)), jnp.float32)
Y = jnp.asarray(RNG.integers(0, 2, 32), jnp.int32)
TRAIN, VAL = Dataset(X[:24], Y[:24]), Dataset(X[24:], Y[24:])
PARAMS = {"w": jnp.zeros((4, 2)), "b": jnp.zeros(2)}
BATCH = re.escape("a batch of x float32[8,4], y int32[8]")


def logits(params, x):
    return x @ params["w"] + params["b"][None]


def xent(out, y):
    return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()


def loss_fn(params, batch, key):
    return xent(logits(params, batch.x), batch.y), {}


def eval_fn(params, data):
    return {"loss": xent(logits(params, data.x), data.y)}


def run(loss=loss_fn, params=PARAMS, train=TRAIN, val=VAL, evaluate=eval_fn):
    return fit(
        loss,
        params,
        optax.sgd(0.1),
        train,
        val,
        eval_fn=evaluate,
        steps=4,
        batch_size=8,
        progress=False,
    )


def test_params_of_the_wrong_shape_for_x_name_loss_fn_and_its_inputs():
    params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}
    with pytest.raises(TypeError, match=r"^loss_fn\(params, batch, key\) failed on ") as info:
        run(params=params)
    message = str(info.value)
    assert re.search(BATCH + re.escape(" and params {b: float32[2], w: float32[3,2]}"), message)
    assert "TypeError: dot_general requires contracting dimensions" in message
    assert "\n" not in message and isinstance(info.value.__cause__, TypeError)


def test_linen_and_nnx_models_given_inputs_of_the_wrong_width():
    dense = nn.Dense(2)
    params = {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros(2)}  # built for width 3

    def linen_loss(p, batch, key):
        return xent(dense.apply({"params": p}, batch.x), batch.y), {}

    with pytest.raises(
        ValueError,
        match=r"loss_fn\(params, batch, key\) failed on "
        + BATCH
        + r" and params \{bias: float32\[2\], kernel: float32\[3,2\]\}: ScopeParamShapeError",
    ):
        run(loss=linen_loss, params=params)

    apply_fn, mlp_params = functional(MLP([3, 5, 2], rngs=nnx.Rngs(0)))

    def mlp_loss(p, batch, key):
        return xent(apply_fn(p, batch.x), batch.y), {}

    with pytest.raises(
        ValueError, match=r"failed on .*layers/0/kernel: float32\[3,5\].*MLP expects"
    ):
        run(loss=mlp_loss, params=mlp_params)


def test_labels_of_the_wrong_shape_for_the_loss():
    one_hot = jax.nn.one_hot(Y, 2).astype(jnp.int32)
    train, val = Dataset(X[:24], one_hot[:24]), Dataset(X[24:], one_hot[24:])
    with pytest.raises(ValueError, match=re.escape("batch of x float32[8,4], y int32[8,2]")):
        run(train=train, val=val)


def test_loss_fn_must_return_a_scalar_loss_and_a_dict_aux():
    with pytest.raises(TypeError, match=r"pair \(loss, aux\).*got an array float32\[\]"):
        run(loss=lambda p, b, k: loss_fn(p, b, k)[0])
    with pytest.raises(TypeError, match=r"pair \(loss, aux\).*got a tuple of 3"):
        run(loss=lambda p, b, k: (*loss_fn(p, b, k), 0))
    per_example = lambda p, b, k: (  # noqa: E731
        optax.softmax_cross_entropy_with_integer_labels(logits(p, b.x), b.y),
        {},
    )
    with pytest.raises(ValueError, match=r"scalar loss, got float32\[8\] on " + BATCH):
        run(loss=per_example)
    with pytest.raises(TypeError, match=r"floating-point loss.*int32\[\]"):
        run(loss=lambda p, b, k: (jnp.sum(b.y), {}))
    with pytest.raises(TypeError, match=r"dict aux.*NoneType"):
        run(loss=lambda p, b, k: (loss_fn(p, b, k)[0], None))


def test_a_loss_fn_that_cannot_be_differentiated():
    def loop_loss(p, batch, key):
        def body(c):
            return c[0] + 1, c[1] * 1.1

        _, loss = jax.lax.while_loop(lambda c: c[0] < 3, body, (0, loss_fn(p, batch, key)[0]))
        return loss, {}

    with pytest.raises(ValueError, match=r"^loss_fn cannot be differentiated .*while_loop"):
        run(loss=loop_loss)


def test_eval_fn_must_run_on_val_and_return_a_dict_of_scalars_with_loss():
    with pytest.raises(
        ValueError,
        match=re.escape("eval_fn(params, val) failed on val x float32[8,4], y int32[8] and ")
        + ".*KeyError: 'v'",
    ):
        run(evaluate=lambda p, d: {"loss": jnp.mean(d.x @ p["v"])})
    per_example = lambda p, d: {  # noqa: E731
        "loss": optax.softmax_cross_entropy_with_integer_labels(logits(p, d.x), d.y),
        "accuracy": jnp.float32(0.5),
    }
    with pytest.raises(ValueError, match=r"dict of scalars.*non-scalar 'loss': float32\[8\]"):
        run(evaluate=per_example)
    with pytest.raises(ValueError, match=r"containing 'loss'.*keys \['xent'\]"):
        run(evaluate=lambda p, d: {"xent": eval_fn(p, d)["loss"]})
    with pytest.raises(ValueError, match=r"containing 'loss'.*got a list of 1"):
        run(evaluate=lambda p, d: [eval_fn(p, d)["loss"]])


def test_train_and_val_must_match():
    with pytest.raises(ValueError, match=re.escape("train x float32[24,4], val x float32[8,5]")):
        run(val=Dataset(jnp.zeros((8, 5)), Y[24:]))
    with pytest.raises(ValueError, match=r"labels differ in kind.*int32\[24\].*float32\[8\]"):
        run(val=Dataset(X[24:], Y[24:].astype(jnp.float32)))
    with pytest.raises(ValueError, match="val: x has 8 examples but y has 7"):
        run(val=Dataset(X[24:], Y[25:]))
    with pytest.raises(ValueError, match="batch_size must be between 1 and the 6 training"):
        run(train=Dataset(X[:6], Y[:6]))
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        run(loss=None)


def test_a_search_gets_fits_message_before_compiling():
    """A model whose input width does not fit the data: the same message from a search as from
    fit, and nothing compiled."""
    from jdl.search import Search, population

    params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}
    with pytest.raises(TypeError) as from_fit:
        run(params=params)
    search = Search(
        lambda key: params,
        lambda hp: optax.sgd(hp["learning_rate"]),
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        batch_size=8,
        eval_every=2,
    )
    pop = population({"learning_rate": [0.1, 0.2]})
    with pytest.raises(TypeError) as from_search:
        search.run(pop, TRAIN, VAL, steps=4, progress=False)
    assert str(from_search.value) == str(from_fit.value)
    assert search.compilations == 0
