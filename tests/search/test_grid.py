"""jdl.search.grid and jdl.search.search: grids, validation, search == separate runs, compile once,
divergence, progress bar."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jdl.optim
from jdl.search import Search, log_grid, population, product, zipped
from jdl.train import init_state, make_chunk

from .conftest import CHUNK, ES, STEPS, TRACES, eval_fn, init_fn, loss_fn, sgd_factory


def test_grids():
    np.testing.assert_allclose(log_grid(1e-4, 1.0, 5), [1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    np.testing.assert_allclose(log_grid(0.5, 2.0, 1), [0.5])
    p = product(learning_rate=[0.1, 0.2], weight_decay=[0.0, 1e-3, 1e-2])
    assert p["learning_rate"].tolist() == [0.1] * 3 + [0.2] * 3
    assert p["weight_decay"].tolist() == [0.0, 1e-3, 1e-2] * 2
    z = zipped(learning_rate=[0.1, 0.2], b1=[0.9, 0.8])
    assert z["b1"].tolist() == [0.9, 0.8]
    pop = population(p, seeds=[3, 5])
    assert (pop.num_configs, pop.num_members) == (6, 12)
    assert pop.seeds.tolist() == [3, 5]
    assert pop.hparams["learning_rate"].dtype == np.float64  # float32 once on the devices
    assert population({"learning_rate": [1.0]}, seeds=2).seeds.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: log_grid(0.0, 1.0, 3), "low must be finite and > 0"),
        (lambda: log_grid(1.0, 0.1, 3), "low must be <= high"),
        (lambda: log_grid(1e-3, 1.0, 0), "num must be a positive int"),
        (lambda: log_grid(1e-3, float("inf"), 2), "high must be finite"),
        (lambda: zipped(a=[1.0, 2.0], b=[1.0]), "one length"),
        (lambda: product(a=[]), "non-empty"),
        (lambda: product(), "at least one"),
        (lambda: product(a=[1.0, float("nan")]), "non-finite"),
        (lambda: population({"learning_rate": [0.1, -1.0]}), "learning_rate values must be > 0"),
        (lambda: population({"learning_rate": [0.1]}, seeds=0), "seeds must be a positive"),
        (lambda: population({"learning_rate": [0.1]}, seeds=[1, 1]), "distinct"),
        (lambda: population({}), "non-empty mapping"),
    ],
)
def test_validation(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_search_boundary_errors(search, data):
    with pytest.raises(TypeError, match="exactly one of loss_fn and make_loss_fn"):
        Search(init_fn, sgd_factory, eval_fn=eval_fn, batch_size=8, eval_every=2, early_stopping=ES)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        Search(
            init_fn,
            sgd_factory,
            loss_fn=loss_fn,
            eval_fn=eval_fn,
            batch_size=0,
            eval_every=2,
            early_stopping=ES,
        )
    with pytest.raises(ValueError, match="lacks"):
        search.run(population({"lr": [0.1]}), *data[:2], steps=4)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        search.run(population({"learning_rate": [0.1]}), *data[:2], steps=0)
    with pytest.raises(ValueError, match="devices must be between 1 and"):
        Search(
            init_fn,
            sgd_factory,
            loss_fn=loss_fn,
            eval_fn=eval_fn,
            batch_size=8,
            eval_every=2,
            early_stopping=ES,
            devices=len(jax.devices()) + 1,
        )


def _separate_runs(lrs, seeds, train, val):
    """Each member's run as a user writes it with jdl.train: init_state + jit(chunk), the
    learning rate an argument (one compile)."""

    @jax.jit
    def chunk(state, lr):
        c = make_chunk(
            loss_fn,
            jdl.optim.sgd(lr),
            batch_size=32,
            eval_every=CHUNK,
            eval_fn=eval_fn,
            early_stopping=ES,
            steps=None,
        )
        return c(state, train, val)

    runs = {}
    for seed in seeds:
        k_init, k_run = jax.random.split(jax.random.key(seed))
        for lr in lrs:
            state = init_state(init_fn(k_init), jdl.optim.sgd(lr), ES, k_run)
            losses = []
            for _ in range(-(-STEPS // CHUNK)):
                state, metrics = chunk(state, lr)
                losses.append(float(metrics["val_loss"]))
            runs[seed, lr] = state, losses
    return runs


def test_search_equals_separate_runs_compiles_once_and_isolates_divergence(search, data, capsys):
    train, val, test = data
    lrs = [0.05, 0.5]
    result = search.run(
        population({"learning_rate": lrs}, seeds=[0, 1]), train, val, steps=STEPS, test=test
    )
    assert result.steps.shape == (2, 2) and (result.steps == STEPS).all()
    runs = _separate_runs(lrs, [0, 1], train, val)
    for s, seed in enumerate([0, 1]):
        for h, lr in enumerate(lrs):
            state, losses = runs[seed, lr]
            np.testing.assert_allclose(result.history["val_loss"][:, s, h], losses, rtol=1e-5)
            for a, b in zip(
                jax.tree.leaves(state.params),
                [x[s, h] for x in jax.tree.leaves(result.params)],
                strict=True,
            ):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            assert int(state.stop.best_step) == result.best_step[s, h]
    assert result.history["step"].tolist() == [4, 8, 12]
    assert set(result.best) == {"val_loss", "val_accuracy", "test_loss", "test_accuracy"}
    # The validation metrics recorded at each member's best evaluation are its best loss.
    np.testing.assert_array_equal(result.best["val_loss"], result.best_val_loss)
    assert result.timing["member_steps"] == 4 * STEPS

    compiled, traces = search.compilations, TRACES["optimizer"]
    # Same shape, other values: a learning rate of 1e4 blows up; nothing recompiles, and the
    # member next to it trains exactly as before.
    other = search.run(
        population({"learning_rate": [0.05, 1e4]}, seeds=[0, 1]), train, val, steps=STEPS, test=test
    )
    assert search.compilations == compiled and TRACES["optimizer"] == traces
    assert other.diverged[:, 1].all() and not other.diverged[:, 0].any()
    assert (other.steps[:, 1] < STEPS).all()
    np.testing.assert_array_equal(
        other.history["val_loss"][:, :, 0], result.history["val_loss"][:, :, 0]
    )
    np.testing.assert_array_equal(
        other.best["test_accuracy"][:, 0], result.best["test_accuracy"][:, 0]
    )
    # The diverged member is frozen with finite parameters; its curves end with NaN.
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(other.params))
    assert np.isnan(other.history["val_loss"][-1, :, 1]).all()

    # Both populations at once, in slices of 2 configurations: the same programs (no
    # compile) and the same results, padding dropped; the progress bar counts both slices.
    capsys.readouterr()
    both = search.run(
        population({"learning_rate": [*lrs, 0.05, 1e4]}, seeds=[0, 1]),
        train,
        val,
        steps=STEPS,
        test=test,
        members_per_chunk=2,
    )
    assert search.compilations == compiled
    bar = capsys.readouterr().err
    assert f"{2 * STEPS}/{2 * STEPS}" in bar  # 2 slices
    # The last slice's members, and the best validation loss with its hyper-parameters.
    assert "members=2 training, 0 stopped, 2 diverged" in bar
    assert "best_val_loss=" in bar and "(learning_rate=" in bar
    assert f"best_val_loss={np.nanmin(result.best_val_loss):.4g}" in bar
    for name in ("val_loss", "train_loss"):
        np.testing.assert_array_equal(
            both.history[name], np.concatenate([result.history[name], other.history[name]], 2)
        )
    np.testing.assert_array_equal(both.steps, np.concatenate([result.steps, other.steps], 1))


def test_loss_hyper_parameters_in_a_product_grid(data):
    """A regularizer's weight is a hyper-parameter like the learning rate (make_loss_fn)."""
    train, val, _ = data

    def make_loss_fn(hp):
        def penalized(params, batch, key):
            loss, aux = loss_fn(params, batch, key)
            squares = sum(jnp.sum(w**2) for w in jax.tree.leaves(params))
            return loss + hp["l2"] * squares, aux

        return penalized

    search = Search(
        init_fn,
        sgd_factory,
        make_loss_fn=make_loss_fn,
        eval_fn=eval_fn,
        batch_size=32,
        eval_every=CHUNK,
        early_stopping=ES,
    )
    pop = population(product(learning_rate=[0.1], l2=[0.0, 1.0]))
    result = search.run(pop, train, val, steps=CHUNK)
    norms = sum(np.sum(w**2, axis=tuple(range(2, w.ndim))) for w in jax.tree.leaves(result.params))
    assert norms[0, 1] < 0.9 * norms[0, 0]  # weight decay shrinks the weights
    assert np.isfinite(result.best_val_loss).all()
