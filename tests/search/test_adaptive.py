"""jdl.search.adaptive: re-estimation raises a too-small rate, never keeps a diverged copy."""

import jax
import numpy as np
import pytest

import jdl.optim
from jdl.search.adaptive import AdaptiveState, make_adaptive, run_adaptive
from jdl.train import init_state

from .conftest import ES, eval_fn, init_fn, loss_fn


def test_adaptive_reestimation(data):
    train, val, _ = data
    probe = jax.tree.map(lambda a: a[:64], train)
    round_fn = make_adaptive(
        loss_fn,
        jdl.optim.sgd,
        batch_size=32,
        period=4,
        probe_steps=2,
        multipliers=(1.0, 4.0, 1e6),
        eval_fn=eval_fn,
        early_stopping=ES,
    )
    k_init, k_run = jax.random.split(jax.random.key(0))
    state = init_state(init_fn(k_init), jdl.optim.sgd(1e-3), ES, k_run)
    # One run: a leading axis of 1.
    state = jax.tree.map(lambda a: a[None], AdaptiveState(state, jax.numpy.float32(1e-3)))
    result = run_adaptive(round_fn, state, train, val, probe, rounds=4, progress=False)
    history = result.history
    lrs = history.learning_rate[0]
    # A too-small rate is raised x4 at every round; the rate x1e6 blows up and is never kept.
    np.testing.assert_allclose(lrs, 1e-3 * 4.0 ** np.arange(1, 5), rtol=1e-6)
    np.testing.assert_allclose(result.state.learning_rate[0], lrs[-1])
    scores = history.probe_loss[0]
    assert (scores[:, 2] > 1e3).all() and (scores[:, 1] < scores[:, 0]).all()
    assert not bool(result.state.train.stop.diverged[0]) and not result.interrupted
    assert history.step[0].tolist() == [6, 12, 18, 24]  # K + R steps per round
    val_loss = history.metrics["val_loss"][0]
    assert np.all(np.isfinite(val_loss)) and val_loss[-1] < val_loss[0]


def test_adaptive_validation():
    kwargs = dict(batch_size=8, period=2, probe_steps=1, eval_fn=eval_fn, early_stopping=ES)
    with pytest.raises(ValueError, match="multipliers"):
        make_adaptive(loss_fn, jdl.optim.sgd, multipliers=(1.0, -2.0), **kwargs)
    with pytest.raises(ValueError, match="period must be a positive int"):
        make_adaptive(loss_fn, jdl.optim.sgd, multipliers=(1.0,), **{**kwargs, "period": 0})
