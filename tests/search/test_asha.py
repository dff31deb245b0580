"""ASHA with refills: a refilled member is the single run of its seed and configuration, the
slots never idle, the budget in member-steps is what the members trained, nothing recompiles."""

import jax
import numpy as np
import pytest

import jdl.optim
from jdl.run import fit
from jdl.search.asha import asha
from jdl.search.samplers import Sampler, log_uniform

from .conftest import CHUNK, ES, eval_fn, init_fn, loss_fn

SEEDS, SLOTS, CHUNKS = [0, 1], 4, 12
BUDGET = len(SEEDS) * SLOTS * CHUNKS * CHUNK


def run(search, data, seed=0):
    train, val, _ = data
    sampler = Sampler({"learning_rate": log_uniform(1e-3, 1.0)}, seed=seed)
    return asha(
        search,
        sampler,
        train,
        val,
        num_slots=SLOTS,
        budget=BUDGET,
        min_steps=CHUNK,
        eta=2,
        seeds=SEEDS,
        progress=False,
    )


@pytest.fixture(scope="module")
def out(search, data):
    return run(search, data)


def single_run(data, lr, seed, steps):
    """The run that the member of ``seed`` with learning rate ``lr`` stands for."""
    train, val, _ = data
    k_init, k_run = jax.random.split(jax.random.key(seed))
    return fit(
        loss_fn,
        init_fn(k_init),
        jdl.optim.sgd(float(np.float32(lr))),  # the member's value, in float32
        train,
        val,
        eval_fn=eval_fn,
        steps=steps,
        batch_size=32,
        eval_every=CHUNK,
        early_stopping=ES,
        key=k_run,
        progress=False,
    )


def test_refilled_members_are_the_single_runs_of_their_configuration(out, data):
    refills = [(h, t) for h, t in enumerate(out.slot_trials) if out.trials[t]["origin"] > 0]
    assert refills  # a slot at the end holds a trial that started after step 0
    for slot, t in refills[:1]:  # one is enough: each single run compiles its own chunk
        trial = out.trials[t]
        assert trial["slot"] == slot
        for s, seed in enumerate(SEEDS):
            ref = single_run(data, trial["hparams"]["learning_rate"], seed, trial["steps"])
            assert int(out.result.steps[s, slot]) == int(ref.state.step)
            np.testing.assert_allclose(
                out.result.best_val_loss[s, slot], float(ref.state.stop.best_metric), rtol=1e-6
            )
            got = jax.tree.map(lambda a, s=s, slot=slot: a[s, slot], out.result.params)
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref.state.params), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_slots_are_refilled_with_new_draws_and_the_lineage_adds_up(out):
    trials = out.trials
    assert len(trials) > SLOTS  # eliminated slots took new configurations
    drawn = Sampler({"learning_rate": log_uniform(1e-3, 1.0)}, seed=0).draw(0, len(trials))
    np.testing.assert_allclose(
        [t["hparams"]["learning_rate"] for t in trials], drawn["learning_rate"], rtol=1e-6
    )
    for t in trials:
        assert t["origin"] % CHUNK == 0 and 0 <= t["steps"] <= CHUNKS * CHUNK - t["origin"]
        if t["status"] == "eliminated":  # eliminated at a rung: it trained exactly that far
            assert t["steps"] == CHUNK * 2 ** t["rung"]
    # The first trials reach rung 0 together: the best half of them by score go on.
    first = np.asarray(out.rung_scores[0][:SLOTS])
    promoted = {h for h in range(SLOTS) if trials[h]["rung"] >= 1}
    assert promoted == set(np.argsort(first, kind="stable")[: SLOTS // 2].tolist())
    assert out.best["score"] == min(t["score"] for t in trials if t["score"] is not None)


def test_the_budget_is_the_members_steps(out):
    history = out.result.history["train_loss"]  # (C, S, H), NaN once a member stopped
    trained = int(np.isfinite(history).sum()) * CHUNK
    assert out.member_steps == trained <= BUDGET
    # The slots never idle but for the kept trial's: at least the budget less its slot.
    assert trained >= BUDGET - len(SEEDS) * CHUNKS * CHUNK


def test_another_sampler_seed_compiles_nothing(out, search, data):
    compiled = search.compilations
    other = run(search, data, seed=1)
    assert search.compilations == compiled
    assert other.trials[0]["hparams"] != out.trials[0]["hparams"]


def test_validation(search, data):
    train, val, _ = data
    sampler = Sampler({"learning_rate": log_uniform(1e-3, 1.0)})
    common = {"num_slots": 2, "min_steps": CHUNK, "progress": False}
    with pytest.raises(ValueError, match="fewer than one rung"):
        asha(search, sampler, train, val, budget=CHUNK, **common)
    with pytest.raises(ValueError, match="eta must be an int >= 2"):
        asha(search, sampler, train, val, budget=BUDGET, eta=1, **common)
    with pytest.raises(ValueError, match="multiple of the search's eval_every"):
        asha(search, sampler, train, val, budget=BUDGET, num_slots=2, min_steps=CHUNK + 1)
