"""Successive halving and population-based training: fixed shapes, copies, lineage."""

import jax
import numpy as np
import pytest

from jdl.search import population
from jdl.search.halving import successive_halving
from jdl.search.pbt import population_based_training

from .conftest import CHUNK


def test_successive_halving_keeps_the_leader_without_recompiling(search, data):
    train, val, test = data
    pop = population({"learning_rate": [1e-3, 0.5]}, seeds=[0, 1])
    search.run(pop, train, val, steps=3 * CHUNK, test=test, progress=False)  # compiled here
    compiled = search.compilations
    out = successive_halving(search, pop, train, val, rung_steps=CHUNK, rungs=2, test=test)
    assert search.compilations == compiled + 1  # only the gather that copies members
    assert out.survivors == [1] and out.ranking[0] == 1
    np.testing.assert_array_equal(out.lineage[0], [[1, 1], [1, 1]])
    np.testing.assert_allclose(out.hparams["learning_rate"][1], [[0.5, 0.5], [0.5, 0.5]])
    # The copy trains exactly as its leader: the second rung's curves coincide.
    last = out.result.history["val_loss"][-1]
    np.testing.assert_array_equal(last[:, 0], last[:, 1])
    assert out.result.history["val_loss"].shape == (2, 2, 2)


def test_pbt_exploits_the_leader_and_perturbs_it(search, data):
    train, val, _ = data
    pop = population({"learning_rate": [1e-3, 0.5]}, seeds=[0, 1])
    compiled = search.compilations
    out = population_based_training(
        search,
        pop,
        train,
        val,
        steps=3 * CHUNK,
        ready_steps=CHUNK,
        key=jax.random.key(0),
        fraction=0.5,
        bounds={"learning_rate": (1e-4, 0.55)},
    )
    assert out.event_steps == [CHUNK, 2 * CHUNK]
    assert search.compilations <= compiled + 1  # at most the gather, once for both events
    lr = out.hparams["learning_rate"]  # (events + 1, S, H)
    assert lr.shape == (3, 2, 2)
    # Event 1: in each seed the slow member (slot 0) copies the fast one, perturbed by 0.8 or
    # 1.25 and clipped to 0.55.
    np.testing.assert_array_equal(out.lineage[0], [[1, 1], [1, 1]])
    assert all(np.isclose(v, 0.4) or np.isclose(v, 0.55) for v in lr[1, :, 0])
    np.testing.assert_allclose(lr[1, :, 1], 0.5)
    for e in range(2):  # the lineage names a member of the population; survivors keep theirs
        assert set(np.unique(out.lineage[e])) <= {0, 1}
    assert np.all(np.isfinite(out.result.best_val_loss))


def test_validation(search, data):
    pop = population({"learning_rate": [0.1]})
    with pytest.raises(ValueError, match="multiple of the search's eval_every"):
        successive_halving(search, pop, *data[:2], rung_steps=CHUNK + 1)
    with pytest.raises(ValueError, match="eta must be an int >= 2"):
        successive_halving(search, pop, *data[:2], rung_steps=CHUNK, eta=1)
    with pytest.raises(ValueError, match="fraction"):
        population_based_training(
            search,
            pop,
            *data[:2],
            steps=CHUNK,
            ready_steps=CHUNK,
            key=jax.random.key(0),
            fraction=0.9,
        )
