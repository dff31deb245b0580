"""jdl.search.adaptive: re-estimation raises a too-small rate, never keeps a diverged copy."""

import jax
import numpy as np
import pytest

import jdl.optim
from jdl.search.adaptive import make_adaptive
from jdl.train import init_state

from .conftest import ES, eval_fn, init_fn, loss_fn


def test_adaptive_reestimation(data):
    train, val, _ = data
    probe = jax.tree.map(lambda a: a[:64], train)
    run = jax.jit(
        make_adaptive(
            loss_fn,
            jdl.optim.sgd,
            batch_size=32,
            period=4,
            probe_steps=2,
            multipliers=(1.0, 4.0, 1e6),
            eval_fn=eval_fn,
            early_stopping=ES,
            num_rounds=4,
        )
    )
    k_init, k_run = jax.random.split(jax.random.key(0))
    state = init_state(init_fn(k_init), jdl.optim.sgd(1e-3), ES, k_run)
    final, lr, history = run(state, 1e-3, train, val, probe)
    lrs = np.asarray(history.learning_rate)
    # A too-small rate is raised x4 at every round; the rate x1e6 blows up and is never kept.
    np.testing.assert_allclose(lrs, 1e-3 * 4.0 ** np.arange(1, 5), rtol=1e-6)
    np.testing.assert_allclose(lr, lrs[-1])
    scores = np.asarray(history.probe_loss)
    assert (scores[:, 2] > 1e3).all() and (scores[:, 1] < scores[:, 0]).all()
    assert not bool(final.stop.diverged)
    assert np.asarray(history.step).tolist() == [6, 12, 18, 24]  # K + R steps per round
    val_loss = np.asarray(history.metrics["val_loss"])
    assert np.all(np.isfinite(val_loss)) and val_loss[-1] < val_loss[0]


def test_adaptive_validation():
    kwargs = dict(
        batch_size=8, period=2, probe_steps=1, eval_fn=eval_fn, early_stopping=ES, num_rounds=1
    )
    with pytest.raises(ValueError, match="multipliers"):
        make_adaptive(loss_fn, jdl.optim.sgd, multipliers=(1.0, -2.0), **kwargs)
    with pytest.raises(ValueError, match="period must be a positive int"):
        make_adaptive(loss_fn, jdl.optim.sgd, multipliers=(1.0,), **{**kwargs, "period": 0})
