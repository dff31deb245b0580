"""`fit` against an independent reference: the plain optax loop of `tests/plain_loop.py`.

The other tests of training compare jdl with jdl (a chunk with `train_step`, a resumed run with
an uninterrupted one); these compare it with a loop written by hand from the documented
contract, so that a wrong fraction of each update, a per-step key that ignores the step or a
divergence that is not frozen fails them.
"""

import functools

import chex
import jax
import numpy as np
import optax

from jdl.run import fit
from tests.plain_loop import (
    ATOL,
    BATCH,
    EVERY,
    RTOL,
    SEED,
    STEPS,
    TRAIN,
    VAL,
    eval_fn,
    init_params,
    loss_fn,
    plain_loop,
)

P0 = init_params(jax.random.key(0))
TX = optax.adam(0.05)  # momentum: a skipped or extra update shows in the parameters


def _fit(loss, **kwargs):
    return fit(
        loss,
        P0,
        TX,
        TRAIN,
        VAL,
        eval_fn=eval_fn,
        steps=STEPS,
        batch_size=BATCH,
        eval_every=EVERY,
        key=SEED,
        progress=False,
        **kwargs,
    )


def test_fit_equals_the_plain_optax_loop():
    result = _fit(loss_fn)
    ref = plain_loop(loss_fn, P0, TX, jax.random.key(SEED), STEPS)
    assert not ref.diverged and int(result.state.step) == STEPS
    chex.assert_trees_all_close(result.state.params, ref.params, rtol=RTOL, atol=ATOL)
    chex.assert_trees_all_close(result.state.opt_state, ref.opt_state, rtol=RTOL, atol=ATOL)
    # The comparison is not vacuous: the parameters moved.
    assert not np.allclose(result.state.params["w1"], P0["w1"], atol=100 * ATOL)


def test_the_loss_sees_the_documented_key_at_every_step():
    """The key handed to ``loss_fn`` at step t is fold_in(fold_in(key, 1), t), new every step."""
    seen = []

    def recording(params, batch, key):
        jax.debug.callback(lambda k: seen.append(np.asarray(k)), jax.random.key_data(key))
        return loss_fn(params, batch, key)

    _fit(recording)
    loss_keys = jax.random.fold_in(jax.random.key(SEED), 1)
    expected = [jax.random.key_data(jax.random.fold_in(loss_keys, t)) for t in range(STEPS)]
    # The last chunk evaluates its steps past the end too (frozen, at step STEPS).
    assert len(seen) == -(-STEPS // EVERY) * EVERY
    np.testing.assert_array_equal(np.stack(seen[:STEPS]), np.stack(expected))
    assert len({k.tobytes() for k in seen[:STEPS]}) == STEPS  # a new key at every step


def test_fit_freezes_the_state_before_the_first_nonfinite_loss():
    """The loss is NaN from the step where the key's uniform draw exceeds 0.9 (step 5 for this
    seed): step, parameters and optimizer state stay those before it."""
    blows = functools.partial(loss_fn, nan_above=0.9)
    ref = plain_loop(blows, P0, TX, jax.random.key(SEED), STEPS)
    assert ref.diverged and 0 < ref.step < STEPS - 1  # mid-run, not at a chunk's end
    result = _fit(blows)
    assert int(result.state.step) == ref.step
    chex.assert_trees_all_close(result.state.params, ref.params, rtol=RTOL, atol=ATOL)
    chex.assert_trees_all_close(result.state.opt_state, ref.opt_state, rtol=RTOL, atol=ATOL)
    assert bool(result.state.stop.diverged) and bool(result.state.stop.should_stop)
    assert len(result.history["step"]) == ref.step // EVERY + 1  # stopped after that chunk
