"""Structural hyper-parameters as data: early stopping's patience and patience increase, the
hidden width (by masking) and the dropout rate vary over one population, each member equal to a
separate `fit` with its own rule or network."""

from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jdl.optim
from jdl.models import MLP, functional, restrict_width
from jdl.run import fit
from jdl.search import Search, population
from jdl.train import classification, early_stopping
from tests.search.conftest import APPLY, FEATURES, eval_fn, init_fn, loss_fn

STEPS, EVERY, BATCH, SEED = 40, 4, 32, 2
# SGD at 3.0: a noisy validation loss, so the patience decides when each member stops.
HPARAMS = {"patience": [4.0, 8.0, 8.0, 100.0], "increase": [1.1, 1.1, 2.0, 1.1]}


def _search(optimizer, **kwargs):
    """A one-device search of conftest's MLP 64-16-10 (its ``loss_fn`` unless a
    ``make_loss_fn`` is given)."""
    if "make_loss_fn" not in kwargs:
        kwargs["loss_fn"] = loss_fn
    return Search(
        init_fn,
        lambda hp: optimizer,
        eval_fn=eval_fn,
        batch_size=BATCH,
        eval_every=EVERY,
        devices=1,
        **kwargs,
    )


def _masked(optimizer):
    """`_search` of the MLP whose hidden width is the hyper-parameter ``width`` (by masking)."""
    return _search(
        optimizer,
        make_loss_fn=lambda hp: classification(partial(APPLY, widths=(hp["width"],)))[0],
        init_member=lambda p, hp: restrict_width(p, (hp["width"],)),
    )


def test_patience_and_its_increase_are_hyper_parameters_of_one_program(data):
    train, val, _ = data
    search = _search(
        jdl.optim.sgd(3.0),
        early_stopping=lambda hp: early_stopping(hp["patience"], patience_increase=hp["increase"]),
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
    search = _search(jdl.optim.sgd(0.1), early_stopping=lambda hp: early_stopping(hp["patience"]))
    with pytest.raises(ValueError, match="patience must be in"):
        search.run(population({"patience": [5.0, 0.0]}), train, val, steps=8, progress=False)


def _single(apply_fn, params, optimizer, train, val, key):
    """A separate `fit` of ``apply_fn`` from ``params``: the reference of a member."""
    loss, evaluate = classification(apply_fn)
    return fit(
        loss,
        params,
        optimizer,
        train,
        val,
        eval_fn=evaluate,
        steps=STEPS,
        batch_size=BATCH,
        eval_every=EVERY,
        key=key,
        progress=False,
    )


def test_hidden_width_by_masking_equals_a_separately_built_narrow_network(data):
    train, val, _ = data
    search = _masked(jdl.optim.adamw(0.02, weight_decay=0.1))
    widths = [3.0, 16.0]
    result = search.run(
        population({"width": widths}, seeds=[SEED]), train, val, steps=STEPS, progress=False
    )
    k_init, k_run = jax.random.split(jax.random.key(SEED))
    seed_params = init_fn(k_init)
    for h, width in enumerate(widths):
        w = int(width)
        start = restrict_width(seed_params, (w,))
        block = {
            "layers": {
                0: {
                    "kernel": start["layers"][0]["kernel"][:, :w],
                    "bias": start["layers"][0]["bias"][:w],
                },
                1: {"kernel": start["layers"][1]["kernel"][:w], "bias": start["layers"][1]["bias"]},
            }
        }
        narrow = functional(MLP((64, w, 10), rngs=nnx.Rngs(0)))[0]
        single = _single(narrow, block, jdl.optim.adamw(0.02, weight_decay=0.1), train, val, k_run)
        got = result.member(h).params["layers"]
        ref = single.state.params["layers"]
        chex.assert_trees_all_close(
            (got[0]["kernel"][:, :w], got[0]["bias"][:w], got[1]["kernel"][:w], got[1]["bias"]),
            (ref[0]["kernel"], ref[0]["bias"], ref[1]["kernel"], ref[1]["bias"]),
            rtol=1e-5,
            atol=1e-6,
        )
        # the units beyond the width never moved from 0
        assert not np.any(got[0]["kernel"][:, w:]) and not np.any(got[1]["kernel"][w:])
        assert result.member(h).best_val_loss == pytest.approx(
            float(single.state.stop.best_metric), 1e-5
        )


def test_a_restricted_block_has_the_narrow_networks_initial_law():
    wide = functional(MLP((64, 512, 512, 10), rngs=nnx.Rngs(1)))[1]
    block = restrict_width(wide, (64, 128))["layers"][1]["kernel"][:64, :128]
    narrow = functional(MLP((64, 64, 128, 10), rngs=nnx.Rngs(2)))[1]["layers"][1]["kernel"]
    assert float(jnp.std(block)) == pytest.approx(float(jnp.std(narrow)), rel=0.05)
    assert float(jnp.std(narrow)) == pytest.approx(64**-0.5, rel=0.05)  # LeCun normal
    with pytest.raises(ValueError, match="integer in"):
        restrict_width(wide, (64, 600))
    with pytest.raises(ValueError, match="2 hidden widths"):
        restrict_width(wide, (64,))


def test_the_dropout_rate_is_a_hyper_parameter_of_one_program(data):
    train, val, _ = data
    search = _search(
        jdl.optim.adam(0.01),
        make_loss_fn=lambda hp: classification(partial(APPLY, dropout_rate=hp["dropout"]))[0],
    )
    rates = [0.0, 0.5]
    result = search.run(
        population({"dropout": rates}, seeds=[SEED]), train, val, steps=STEPS, progress=False
    )
    k_init, k_run = jax.random.split(jax.random.key(SEED))
    finals = []
    for h, rate in enumerate(rates):
        # the reference: a network built with its rate, nnx.Dropout drawing the masks
        built = functional(MLP(FEATURES, dropout_rate=rate, rngs=nnx.Rngs(0)))[0]
        single = _single(built, init_fn(k_init), jdl.optim.adam(0.01), train, val, k_run)
        chex.assert_trees_all_close(
            result.member(h).params, single.state.params, rtol=1e-5, atol=1e-6
        )
        finals.append(result.member(h).best_val_loss)
    assert len(set(finals)) == len(rates)  # the rates changed the runs


def test_a_width_beyond_the_network_is_refused_before_compiling(data):
    train, val, _ = data
    search = _masked(jdl.optim.adam(0.01))
    for bad in (17.0, 2.5, 0.0):
        with pytest.raises(ValueError, match=r"integer in \[1, 16\]"):
            search.run(population({"width": [4.0, bad]}), train, val, steps=8, progress=False)
