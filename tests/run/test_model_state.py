"""`fit` of a model with state (BatchNorm) against the hand-written ``nnx.jit`` loop of
`tests/nnx_bn_loop.py`: parameters, running statistics, evaluation with the running statistics,
early stopping's saved statistics, resume from a checkpoint, the divergence freeze, and the
boundary's checks of the stateful contract."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jdl.data import Dataset
from jdl.models import stateful
from jdl.run import fit
from jdl.train import TrainState, batch_step, classification, early_stopping, init_state
from jdl.types import Variables
from tests.nnx_bn_loop import ATOL, BATCH, EVERY, RTOL, SEED, STEPS, TRAIN, VAL, model, nnx_loop

TX = optax.adam(0.05)  # momentum: a skipped or extra update shows in the parameters
# Monitoring the loss in "max" mode saves the first chunk as the best: the saved statistics
# then differ from the final ones (with patience beyond the run, training goes to the end).
WORST = early_stopping(10 * STEPS, mode="max")


@pytest.fixture(scope="module")
def fns():
    apply_fn, variables = stateful(model(jax.random.key(0)))
    return variables, *classification(apply_fn, stateful=True)


def _fit(fns, **kwargs):
    variables, loss_fn, eval_fn = fns
    return fit(
        loss_fn,
        variables,
        TX,
        TRAIN,
        VAL,
        eval_fn=eval_fn,
        steps=STEPS,
        batch_size=BATCH,
        eval_every=EVERY,
        early_stopping=WORST,
        key=SEED,
        progress=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def fitted(fns):
    return _fit(fns)


@pytest.fixture(scope="module")
def reference():
    return nnx_loop(model(jax.random.key(0)), TX, jax.random.key(SEED))


def test_fit_equals_the_nnx_jit_loop(fitted, reference, fns):
    assert int(fitted.state.step) == STEPS
    chex.assert_trees_all_close(fitted.state.params, reference.params, rtol=RTOL, atol=ATOL)
    chex.assert_trees_all_close(fitted.state.model_state, reference.stats, rtol=RTOL, atol=ATOL)
    # Evaluation mode normalises with the running statistics, as model.eval() does.
    np.testing.assert_allclose(fitted.history["val_loss"], reference.val_loss, rtol=RTOL)
    # Not vacuous: the statistics moved away from their initial (0, 1).
    initial = fns[0].model_state
    assert not np.allclose(fitted.state.model_state["norm"]["mean"], initial["norm"]["mean"])
    assert not np.allclose(fitted.state.model_state["norm"]["var"], initial["norm"]["var"])


def test_early_stopping_saves_the_statistics_with_the_best_parameters(fitted, reference):
    assert int(fitted.state.stop.best_step) == EVERY  # the first chunk's (the worst) loss
    best_params, best_stats = reference.saved[0]
    chex.assert_trees_all_close(fitted.best_params, best_params, rtol=RTOL, atol=ATOL)
    chex.assert_trees_all_close(fitted.best_model_state, best_stats, rtol=RTOL, atol=ATOL)
    assert not np.allclose(best_stats["norm"]["mean"], reference.stats["norm"]["mean"])


def test_resume_from_a_checkpoint_restores_the_statistics(tmp_path, fns, fitted):
    def crash(state, row):
        if row["step"] == EVERY:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        _fit(fns, checkpoint_dir=tmp_path, callback=crash)
    resumed = _fit(fns, checkpoint_dir=tmp_path)
    assert len(resumed.history["step"]) == len(fitted.history["step"])
    # Statistics restarted from their initial values would differ: momentum keeps history.
    chex.assert_trees_all_equal(resumed.state.model_state, fitted.state.model_state)
    chex.assert_trees_all_equal(resumed.best_model_state, fitted.best_model_state)
    chex.assert_trees_all_equal(resumed.state.params, fitted.state.params)


def _state_with_stats(loss_value):
    """A one-parameter state with a model state, and a stateful loss that returns
    ``loss_value`` and statistics moved to 7."""

    def loss_fn(params, model_state, batch, key):
        new = jax.tree.map(lambda a: a + 7.0, model_state)
        return params["w"] * 0.0 + loss_value, ({}, new)

    variables = Variables({"w": jnp.ones(())}, {"mean": jnp.zeros(3)})
    state = init_state(variables, optax.sgd(0.1), early_stopping(5), jax.random.key(0))
    return state, loss_fn


def test_a_non_finite_loss_does_not_update_the_statistics():
    batch = Dataset(jnp.zeros((2, 1)), jnp.zeros((2,), jnp.int32))
    state, loss_fn = _state_with_stats(jnp.nan)
    new, _ = jax.jit(batch_step(loss_fn, optax.sgd(0.1)))(state, batch)
    assert bool(new.stop.diverged) and int(new.step) == 0
    np.testing.assert_array_equal(new.model_state["mean"], np.zeros(3))
    state, loss_fn = _state_with_stats(1.0)
    new, _ = jax.jit(batch_step(loss_fn, optax.sgd(0.1)))(state, batch)
    assert isinstance(new, TrainState) and int(new.step) == 1
    np.testing.assert_array_equal(new.model_state["mean"], np.full(3, 7.0))


def test_the_boundary_checks_the_stateful_contract(fns):
    variables, loss_fn, eval_fn = fns

    def run(loss, evaluate=eval_fn):
        fit(loss, variables, TX, TRAIN, VAL, eval_fn=evaluate, steps=2, batch_size=BATCH)

    # A stateless loss given a model state: the call itself fails, named.
    stateless = lambda params, batch, key: (jnp.zeros(()), {})  # noqa: E731
    with pytest.raises(TypeError, match=r"loss_fn\(params, model_state, batch, key\) failed"):
        run(stateless)

    def drops_state(params, model_state, batch, key):
        return loss_fn(params, model_state, batch, key)[0], {}

    with pytest.raises(TypeError, match=r"must return \(loss, \(aux, model_state\)\)"):
        run(drops_state)

    def reshapes_state(params, model_state, batch, key):
        loss, (aux, new) = loss_fn(params, model_state, batch, key)
        return loss, (aux, jax.tree.map(lambda a: a[:2], new))

    with pytest.raises(TypeError, match="structure, shapes and dtypes"):
        run(reshapes_state)
    with pytest.raises(TypeError, match=r"eval_fn\(params, model_state, val\) failed"):
        run(loss_fn, lambda params, data: {"loss": jnp.zeros(())})
