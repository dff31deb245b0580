"""Search members against an independent reference: the plain optax loop of
`tests/plain_loop.py`, one run per member from the documented seed contract
(``k_init, k_run = split(key(seed))``), not jdl's own `init_state`/`make_chunk`."""

import functools

import chex
import jax
import numpy as np
import optax

from jdl.search import Search, population
from jdl.train import early_stopping
from tests.plain_loop import (
    ATOL,
    BATCH,
    EVERY,
    RTOL,
    STEPS,
    TRAIN,
    VAL,
    eval_fn,
    init_params,
    loss_fn,
    plain_loop,
)

SEEDS = [0, 4]
# Configuration 1's loss is NaN once its key's uniform draw exceeds 0.8: at step 3 for seed 0
# and 4 for seed 4. Configuration 0 never diverges and must not notice.
HPARAMS = {"learning_rate": [0.05, 0.02], "nan_above": [2.0, 0.8]}


def test_search_members_equal_the_plain_optax_loop_and_freeze_before_nonfinite_losses():
    search = Search(
        init_params,
        lambda hp: optax.adam(hp["learning_rate"]),
        make_loss_fn=lambda hp: functools.partial(loss_fn, nan_above=hp["nan_above"]),
        eval_fn=eval_fn,
        batch_size=BATCH,
        eval_every=EVERY,
        early_stopping=early_stopping(100),
        devices=1,
    )
    state = search.init(population(HPARAMS, seeds=SEEDS), TRAIN, VAL)
    for _ in range(-(-STEPS // EVERY)):
        state, _ = search.advance(state, TRAIN, VAL, steps=STEPS)
    t = state.train  # leaves (S, H', ...) but the key, shape (S,)
    trained = jax.device_get((t.step, t.params, t.opt_state, t.stop))
    for s, seed in enumerate(SEEDS):
        k_init, k_run = jax.random.split(jax.random.key(seed))
        for h, (lr, nan_above) in enumerate(zip(*HPARAMS.values(), strict=True)):
            loss = functools.partial(loss_fn, nan_above=nan_above)
            ref = plain_loop(loss, init_params(k_init), optax.adam(lr), k_run, STEPS)
            assert ref.diverged == (h == 1)
            if ref.diverged:
                assert 0 < ref.step < STEPS - 1  # mid-run
            step, params, opt_state, stop = jax.tree.map(lambda a, s=s, h=h: a[s, h], trained)
            assert int(step) == ref.step, (seed, h)
            chex.assert_trees_all_close(params, ref.params, rtol=RTOL, atol=ATOL)
            chex.assert_trees_all_close(opt_state, ref.opt_state, rtol=RTOL, atol=ATOL)
            assert bool(stop.diverged) == bool(stop.should_stop) == ref.diverged
            assert not np.allclose(params["w1"], init_params(k_init)["w1"], atol=1e-4)
