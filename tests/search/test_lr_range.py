"""The learning-rate range test against independent references: each seed's recorded losses
equal a plain optax loop with the exponential schedule written out by hand, it stops where
its loss first exceeds k times its minimum, and the suggestion rule on closed-form curves."""

import math

import jax
import numpy as np
import optax
import pytest

from jdl.data import minibatch
from jdl.search import lr_range_test, suggest
from jdl.search.lr_range import smooth
from tests.plain_loop import BATCH, TRAIN, VAL, eval_fn, init_params, loss_fn

SEEDS = [0, 4]
LR_MIN, LR_MAX, STEPS, EVERY, K = 1e-3, 30.0, 40, 4, 3.0


@pytest.fixture(scope="module")
def tested():
    return lr_range_test(
        init_params,
        optax.sgd,
        TRAIN,
        VAL,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        lr_min=LR_MIN,
        lr_max=LR_MAX,
        steps=STEPS,
        seeds=SEEDS,
        batch_size=BATCH,
        eval_every=EVERY,
        divergence_factor=K,
        smoothing=0.5,
        devices=1,
        progress=False,
    )


def test_each_seed_equals_the_plain_loop_with_the_schedule_and_stops_at_k_times_its_minimum(
    tested,
):
    def rate(count):  # eta_t = eta_min (eta_max / eta_min)^(t / (K - 1)), by hand
        return LR_MIN * (LR_MAX / LR_MIN) ** (count / (STEPS - 1))

    at = np.arange(EVERY, STEPS + 1, EVERY)
    np.testing.assert_allclose(tested.learning_rate, rate(at - 1.0), rtol=1e-5)
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    for s, seed in enumerate(SEEDS):
        # The plain loop of tests/plain_loop.py, with the loss recorded every EVERY steps.
        k_init, k_run = jax.random.split(jax.random.key(seed))
        params, tx = init_params(k_init), optax.sgd(rate)
        opt_state, expected = tx.init(params), []
        for t in range(STEPS):
            batch = minibatch(TRAIN, jax.random.fold_in(k_run, 0), t, BATCH)
            key = jax.random.fold_in(jax.random.fold_in(k_run, 1), t)
            (_, _), grads = grad_fn(params, batch, key)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            if (t + 1) % EVERY:
                continue
            expected.append(float(eval_fn(params, VAL)["loss"]))
            if not math.isfinite(expected[-1]) or expected[-1] > K * min(expected[:-1] or [np.inf]):
                break  # the first loss above k x the minimum so far: the member stops
        c = len(expected)
        assert c < len(at), "the ramp to 30 must blow up SGD on this problem"
        assert tested.diverged[s]
        np.testing.assert_allclose(tested.raw_loss[s, :c], expected, rtol=2e-4)
        assert np.all(np.isnan(tested.raw_loss[s, c:]))  # frozen after it
    # The band holds every seed, and the mean is their mean, while all seeds train.
    live = np.isfinite(tested.mean)
    np.testing.assert_allclose(tested.mean[live], tested.loss[:, live].mean(0))
    assert np.all(tested.low[live] <= tested.mean[live]) and np.all(
        tested.mean[live] <= tested.high[live]
    )
    assert LR_MIN <= tested.suggestion <= tested.rate_at_min <= LR_MAX


def test_smoothing_and_suggestion_on_closed_forms():
    # EMA with bias correction: a constant curve stays constant; beta 0 is the identity.
    np.testing.assert_allclose(smooth(np.full((2, 5), 3.0), 0.9), 3.0)
    x = np.array([[1.0, 2.0, 4.0]])
    np.testing.assert_allclose(smooth(x, 0.0), x)
    np.testing.assert_allclose(smooth(x, 0.5)[0, 1], (0.25 * 1 + 0.5 * 2) / 0.75)
    # L = -tanh(log(eta / 1e-2)) + (eta / 0.3)^2: steepest descent at 1e-2, minimum near 0.3.
    rates = np.geomspace(1e-5, 10.0, 301)
    loss = -np.tanh(np.log(rates / 1e-2)) + (rates / 0.3) ** 2
    suggestion, at_min = suggest(rates, loss)
    assert suggestion == pytest.approx(1e-2, rel=0.03)
    assert at_min == rates[np.argmin(loss)]
    # The curve ends at its first NaN (the member stopped); too short a curve suggests nothing.
    cut = np.where(rates > 1e-3, np.nan, loss)
    assert suggest(rates, cut)[0] <= 1e-3
    assert all(math.isnan(v) for v in suggest(rates[:1], loss[:1]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr_min": 1.0, "lr_max": 0.1}, "lr_min must be < lr_max"),
        ({"lr_min": 0.0}, "lr_min must be in"),
        ({"divergence_factor": 1.0}, "divergence_factor must be in"),
        ({"smoothing": 1.0}, "smoothing must be in"),
        ({"steps": 1}, "steps must be >= 2"),
    ],
)
def test_bad_arguments_raise_before_compiling(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lr_range_test(
            init_params, optax.sgd, TRAIN, VAL, loss_fn=loss_fn, eval_fn=eval_fn, **kwargs
        )
