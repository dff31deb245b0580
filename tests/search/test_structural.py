"""Structural hyper-parameters as data: early stopping's patience and patience increase vary
over one population, each member equal to a separate `fit` with its own rule."""

import chex
import jax
import pytest

import jdl.optim
from jdl.run import fit
from jdl.search import Search, population
from jdl.train import early_stopping
from tests.search.conftest import eval_fn, init_fn, loss_fn

STEPS, EVERY, BATCH, SEED = 40, 4, 32, 2
# SGD at 3.0: a noisy validation loss, so the patience decides when each member stops.
HPARAMS = {"patience": [4.0, 8.0, 8.0, 100.0], "increase": [1.1, 1.1, 2.0, 1.1]}


def test_patience_and_its_increase_are_hyper_parameters_of_one_program(data):
    train, val, _ = data
    search = Search(
        init_fn,
        lambda hp: jdl.optim.sgd(3.0),
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        batch_size=BATCH,
        eval_every=EVERY,
        early_stopping=lambda hp: early_stopping(hp["patience"], patience_increase=hp["increase"]),
        devices=1,
    )
    pop = population(HPARAMS, seeds=[SEED])
    result = search.run(pop, train, val, steps=STEPS, progress=False)
    steps = []
    for h, (patience, increase) in enumerate(zip(*HPARAMS.values(), strict=True)):
        k_init, k_run = jax.random.split(jax.random.key(SEED))
        single = fit(
            loss_fn,
            init_fn(k_init),
            jdl.optim.sgd(3.0),
            train,
            val,
            eval_fn=eval_fn,
            steps=STEPS,
            batch_size=BATCH,
            eval_every=EVERY,
            early_stopping=early_stopping(patience, patience_increase=increase),
            key=k_run,
            progress=False,
        )
        member = result.member(h)
        assert member.steps == int(single.state.step), h
        assert member.best_val_loss == pytest.approx(float(single.state.stop.best_metric), 1e-5)
        chex.assert_trees_all_close(member.params, single.state.params, rtol=1e-5, atol=1e-6)
        steps.append(member.steps)
    assert len(set(steps)) > 1 and steps[-1] == STEPS  # the rule's data changed the stops


def test_a_bad_patience_value_is_refused_before_compiling(data):
    train, val, _ = data
    search = Search(
        init_fn,
        lambda hp: jdl.optim.sgd(0.1),
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        batch_size=BATCH,
        eval_every=EVERY,
        early_stopping=lambda hp: early_stopping(hp["patience"]),
        devices=1,
    )
    with pytest.raises(ValueError, match="patience must be in"):
        search.run(population({"patience": [5.0, 0.0]}), train, val, steps=8, progress=False)
