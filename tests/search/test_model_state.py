"""A search of a model with state (BatchNorm): each member its own running statistics, equal to
the hand-written ``nnx.jit`` loop of `tests/nnx_bn_loop.py` run alone with the member's seed
contract (``k_init, k_run = split(key(seed))``), and the test set evaluated with each member's
saved statistics."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jdl.models import stateful
from jdl.run import RunSpec
from jdl.search import Search, population
from jdl.search.programs import PopulationPrograms, SearchState
from jdl.train import classification, early_stopping, init_state
from jdl.types import Variables
from tests.nnx_bn_loop import ATOL, BATCH, EVERY, RTOL, STEPS, TRAIN, VAL, model, nnx_loop

SEEDS = [0, 5]
RATES = [0.05, 0.01]


@pytest.fixture(scope="module")
def searched():
    apply_fn, _ = stateful(model(jax.random.key(0)))
    loss_fn, eval_fn = classification(apply_fn, stateful=True)
    search = Search(
        lambda key: stateful(model(key))[1],
        lambda hp: optax.adam(hp["learning_rate"]),
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        batch_size=BATCH,
        eval_every=EVERY,
    )
    pop = population({"learning_rate": RATES}, seeds=SEEDS)
    result = search.run(pop, TRAIN, VAL, steps=STEPS, test=VAL, progress=False)
    return result, eval_fn


def test_a_member_equals_its_single_nnx_run_and_each_has_its_own_statistics(searched):
    result, _ = searched
    h, s = 1, 1  # neither axis at index 0: a mix-up of configurations or seeds shows
    member = result.member(h, s)
    k_init, k_run = jax.random.split(jax.random.key(SEEDS[s]))
    ref = nnx_loop(model(k_init), optax.adam(RATES[h]), k_run)
    chex.assert_trees_all_close(member.params, ref.params, rtol=RTOL, atol=ATOL)
    chex.assert_trees_all_close(member.model_state, ref.stats, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(result.history["val_loss"][:, s, h], ref.val_loss, rtol=RTOL)
    # Each member its own statistics: no two members share them.
    means = result.model_state["norm"]["mean"].reshape(4, -1)
    assert len({tuple(np.round(m, 5)) for m in means}) == 4


def test_the_test_set_is_evaluated_with_each_members_saved_statistics(searched):
    result, eval_fn = searched
    for h in range(2):
        for s in range(2):
            m = result.member(h, s)
            expected = eval_fn(m.best_params, m.best_model_state, VAL)["accuracy"]
            np.testing.assert_allclose(result.best["test_accuracy"][s, h], expected, rtol=1e-6)


def test_copying_a_member_copies_its_statistics():
    """Halving and PBT copy members with `PopulationPrograms.copy`: the statistics go along."""
    es = early_stopping(5)

    def member(value):
        variables = Variables({"w": jnp.full(2, value)}, {"mean": jnp.full(3, value)})
        return init_state(variables, optax.sgd(0.1), es, 0)

    members = [member(10.0 * s + h) for s in range(2) for h in range(2)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a).reshape(2, 2, *a[0].shape), *members)
    keys = jax.random.split(jax.random.key(0), 2)
    train = stacked._replace(key=keys)
    hp = {"learning_rate": jnp.ones((2, 2))}
    metrics = {"val_loss": jnp.zeros((2, 2))}
    state = SearchState(hp, train, jnp.zeros((), jnp.int32), metrics, metrics, jnp.ones(2, bool))
    spec = RunSpec(optax.sgd(0.1), lambda p, s, d: {}, 1, 1, es, loss_fn=lambda *a: 0)
    out = PopulationPrograms(spec).copy(state, jnp.array([[1, 1], [0, 0]]), hp)
    copied = [[1.0, 1.0], [10.0, 10.0]]  # seed 0 takes member 1's, seed 1 member 0's
    np.testing.assert_array_equal(out.train.params["w"][:, :, 0], copied)
    np.testing.assert_array_equal(out.train.model_state["mean"][:, :, 0], copied)
    np.testing.assert_array_equal(out.train.stop.best_model_state["mean"][:, :, 0], copied)
