"""The train step and the compiled chunk on tiny synthetic data (a plain-function model)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jdl.optim
from jdl.data import Dataset
from jdl.run import RunSpec
from jdl.train import early_stopping, init_state, make_chunk, train_step


def make_data(n=64, seed=0):
    """Linear regression y = x w* + b* + noise, 3 inputs."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5], np.float32) + 0.3 + 0.01 * rng.standard_normal(n)
    return Dataset(jnp.asarray(x), jnp.asarray(y.astype(np.float32)))


def apply_fn(params, x):
    return x @ params["w"] + params["b"]


def loss_fn(params, batch, key):
    del key
    return jnp.mean((apply_fn(params, batch.x) - batch.y) ** 2), {}


def eval_fn(params, data):
    err = apply_fn(params, data.x) - data.y
    return {"loss": jnp.mean(err**2), "mae": jnp.mean(jnp.abs(err))}


PARAMS = {"w": jnp.zeros(3), "b": jnp.zeros(())}
TRAIN, VAL = make_data(64, 0), make_data(32, 1)


def test_chunk_trains_compiles_once_and_is_deterministic():
    es = early_stopping(1000)
    tx = optax.sgd(0.05)
    chunk = jax.jit(
        make_chunk(
            loss_fn,
            tx,
            batch_size=16,
            eval_every=20,
            eval_fn=eval_fn,
            early_stopping=es,
            steps=50,
        )
    )
    state = init_state(PARAMS, tx, es, jax.random.key(0))
    history = []
    for _ in range(3):
        state, metrics = chunk(state, TRAIN, VAL)
        history.append({k: float(v) for k, v in metrics.items()})
    assert chunk._cache_size() == 1
    # The chunk draws the batches of jdl.data.minibatch (permutations computed per chunk):
    # 3 single steps, then a chunk starting mid-epoch, equal 23 single steps.
    step = jax.jit(train_step(loss_fn, tx, batch_size=16))
    singles = init_state(PARAMS, tx, es, jax.random.key(0))
    for _ in range(3):
        singles, _ = step(singles, TRAIN)
    chunked, _ = chunk(singles, TRAIN, VAL)
    for _ in range(20):
        singles, _ = step(singles, TRAIN)
    np.testing.assert_allclose(chunked.params["w"], singles.params["w"], rtol=1e-6)
    assert int(chunked.step) == int(singles.step) == 23
    assert set(history[0]) == {"train_loss", "val_loss", "val_mae"}
    assert history[-1]["val_loss"] < 0.05 * history[0]["train_loss"]
    assert history[0]["val_loss"] > history[1]["val_loss"] > history[2]["val_loss"]
    assert int(state.step) == 50  # the last chunk ran 10 real steps and 10 no-ops
    assert int(state.stop.best_step) == 50 and not bool(state.stop.should_stop)
    again = init_state(PARAMS, tx, es, jax.random.key(0))
    for _ in range(3):
        again, _ = chunk(again, TRAIN, VAL)
    np.testing.assert_array_equal(again.params["w"], state.params["w"])
    other = init_state(PARAMS, tx, es, jax.random.key(1))
    other, _ = chunk(other, TRAIN, VAL)
    assert not np.array_equal(
        other.params["w"], chunk(init_state(PARAMS, tx, es, 0), TRAIN, VAL)[0].params["w"]
    )


def test_frozen_member_and_nonfinite_loss():
    es = early_stopping(1000)
    tx = optax.sgd(0.1)
    step = jax.jit(train_step(loss_fn, tx, batch_size=8))
    state = init_state(PARAMS, tx, es, 0)
    stopped = state._replace(stop=state.stop._replace(should_stop=jnp.asarray(True)))
    after, loss = step(stopped, TRAIN)
    assert int(after.step) == 0 and np.isfinite(float(loss))
    unkeyed = [jax.tree.leaves(s._replace(key=None)) for s in (after, stopped)]
    for a, b in zip(*unkeyed, strict=True):
        np.testing.assert_array_equal(a, b)
    # A huge learning rate blows the loss up: the update that would apply a non-finite loss's
    # gradient is dropped, the run is flagged and frozen, and its parameters stay finite.
    tx_big = optax.sgd(1e4)
    big = init_state(PARAMS, tx_big, es, 0)
    blow = jax.jit(
        make_chunk(loss_fn, tx_big, batch_size=8, eval_every=30, eval_fn=eval_fn, early_stopping=es)
    )
    big, metrics = blow(big, TRAIN, VAL)
    assert bool(big.stop.diverged) and bool(big.stop.should_stop)
    assert 0 < int(big.step) < 30
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(big.params))
    assert not np.isfinite(float(metrics["train_loss"]))  # the blow-up is reported


def test_vmap_over_learning_rates_equals_separate_runs():
    es = early_stopping(1000)
    lrs = jnp.array([0.01, 0.05, 0.2])

    def run(lr, key):
        tx = jdl.optim.sgd(lr)
        chunk = make_chunk(
            loss_fn, tx, batch_size=16, eval_every=15, eval_fn=eval_fn, early_stopping=es
        )
        state = init_state(PARAMS, tx, es, key)
        return chunk(state, TRAIN, VAL)

    keys = jax.random.split(jax.random.key(0), 3)
    batched_state, batched_metrics = jax.jit(jax.vmap(run))(lrs, keys)
    single = jax.jit(run)
    for i in range(3):
        state, metrics = single(lrs[i], keys[i])
        np.testing.assert_allclose(batched_state.params["w"][i], state.params["w"], rtol=1e-5)
        np.testing.assert_allclose(batched_metrics["val_loss"][i], metrics["val_loss"], rtol=1e-5)
    assert single._cache_size() == 1
    losses = np.asarray(batched_metrics["val_loss"])
    assert losses[0] > losses[1] > losses[2]


def test_bad_arguments_raise_clearly_at_the_boundary():
    """The compiled pieces do not re-check; the run spec and the boundary do, once."""
    es = early_stopping(10)
    tx = optax.sgd(0.1)
    common = {"loss_fn": loss_fn, "eval_fn": eval_fn}
    with pytest.raises(ValueError, match="eval_every must be a positive int"):
        RunSpec(tx, batch_size=8, eval_every=0, early_stopping=es, **common)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        RunSpec(tx, batch_size=0, eval_every=2, early_stopping=es, **common)
    with pytest.raises(TypeError, match="early_stopping"):
        RunSpec(tx, batch_size=8, eval_every=2, early_stopping=3, **common)
    with pytest.raises(TypeError, match="exactly one of loss_fn and make_loss_fn"):
        RunSpec(tx, eval_fn=eval_fn, batch_size=8, eval_every=2)
    with pytest.raises(TypeError, match="optimizer"):
        init_state(PARAMS, "adam", es, 0)
    spec = RunSpec(tx, lambda p, d: {"mse": jnp.zeros(())}, 8, 2, es, loss_fn=loss_fn)
    with pytest.raises(ValueError, match="'loss'"):
        spec.check({}, PARAMS, jax.random.key(0), TRAIN, VAL)
