"""Early stopping: every rule, checked under jit and vmap against hand-computed runs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdl.train import early_stopping


def run_members(metrics, steps=None, **hparams):
    """Feeds each row of ``metrics`` to its own member (vmap) in one compiled scan.

    ``hparams`` are arrays with one value per member, closed over as traced values.
    Returns per member: the first step with should_stop (-1 if never), best step, best metric,
    best params (the step number the params were taken at) and diverged.
    """
    metrics = jnp.asarray(metrics, jnp.float32)
    t = metrics.shape[1]
    steps = jnp.arange(t, dtype=jnp.int32) if steps is None else jnp.asarray(steps, jnp.int32)
    static = {k: v for k, v in hparams.items() if not isinstance(v, np.ndarray)}
    traced = {k: v for k, v in hparams.items() if isinstance(v, np.ndarray)}

    def one(row, hp):
        es = early_stopping(**static, **hp)

        def body(state, inp):
            m, s = inp
            state = es.update(state, m, s, {"at": s.astype(jnp.float32)})
            return state, state.should_stop

        state, stops = jax.lax.scan(body, es.init({"at": jnp.float32(-1.0)}), (row, steps))
        first = jnp.where(jnp.any(stops), steps[jnp.argmax(stops)], -1)
        return first, state.best_step, state.best_metric, state.best_params["at"], state.diverged

    out = jax.jit(jax.vmap(one))(metrics, traced)
    return [np.asarray(o) for o in out]


def keras_reference(seq, patience, min_delta):
    """Keras 3 EarlyStopping.on_epoch_end, min mode, no baseline: (stopped epoch, best epoch).

    Keras negates min_delta in min mode, so its ``monitor_op(current - min_delta, best)`` is
    ``current + |min_delta| < best``. Keras's best epoch is its last significant improvement;
    the course's rule restores the lowest value seen up to the stop instead, returned third.
    """
    wait, best, best_epoch = 0, math.inf, 0
    for epoch, current in enumerate(seq):
        wait += 1
        if current + abs(min_delta) < best:
            best, best_epoch, wait = current, epoch, 0
            continue
        if wait >= patience and epoch > 0:
            return epoch, best_epoch, int(np.argmin(seq[: epoch + 1]))
    return -1, best_epoch, int(np.argmin(seq))


def bengio_reference(seq, patience, patience_increase, threshold):
    """The deeplearning.net loop of Bengio (2012): the improvement threshold is measured
    against the previous minimum. Returns (stop step, best step)."""
    deadline, best, best_step = patience, math.inf, -1
    for t, loss in enumerate(seq):
        if loss < best:
            if loss < best * threshold:
                deadline = max(deadline, math.ceil(t * patience_increase))
            best, best_step = loss, t
        if t >= deadline:
            return t, best_step
    return -1, best_step


def test_course_example_patience_3():
    (first,), (best,), (best_m,), (at,), (div,) = [
        o for o in run_members([[1.0, 0.9, 0.95, 0.95, 0.95]], patience=3)
    ]
    assert (first, best, at, div) == (4, 1, 1.0, False)
    assert best_m == pytest.approx(0.9)


def test_every_new_minimum_is_saved_only_significant_ones_extend():
    # The README's Bengio setting: 0.899 and 0.8985 are below the 0.5% threshold, but are
    # new minima, so step 3 is restored (the rule that saved significant minima only gave 1).
    seq = [[1.0, 0.9, 0.899, 0.8985, 0.95, 0.95]]
    for extra in ({"patience_increase": 2.0}, {}):
        first, best, best_m, at, _ = run_members(
            seq, patience=4, min_delta=0.005, relative=True, **extra
        )
        # Significant at 0 and 1 only: deadline max(4, 2) = 4 (Bengio) or 1 + 4 = 5 (Keras).
        assert (first[0], best[0], at[0]) == (4 if extra else 5, 3, 3.0)
        assert best_m[0] == pytest.approx(0.8985)
    assert bengio_reference(seq[0], 4, 2.0, 0.995) == (4, 3)


def test_baseline_never_beaten_restores_the_best_seen():
    # Keras 3's own test: baseline 0.5 is never beaten; Keras restores epoch 2 (0.7), so do we
    # (the initial deadline 0 + 5 stops at step 5; Keras's wait counter stops at epoch 4).
    seq = [[0.9, 0.8, 0.7, 0.71, 0.72, 0.73, 0.74]]
    first, best, best_m, at, _ = run_members(seq, patience=5, baseline=0.5)
    assert (first[0], best[0], at[0]) == (5, 2, 2.0)
    assert best_m[0] == pytest.approx(0.7)


def test_slow_steady_decrease_extends_once_improvements_add_up_vmapped():
    # m_t = 0.998^t: each step improves by 0.2%. The deadline is extended only when the
    # improvement since the last extension exceeds min_delta (relative), i.e. every k steps
    # with 0.998^k < 1 - min_delta: k = 3 for 0.005, k = 1 for 0.001, k = 6 for 0.01.
    t = 40
    seq = (0.998 ** np.arange(t)).astype(np.float32)
    min_delta = np.array([0.005, 0.005, 0.001, 0.01, 0.01], np.float32)
    patience = np.array([4, 2, 2, 5, 6], np.int32)
    first, best, _, at, div = run_members(
        np.tile(seq, (5, 1)), patience=patience, min_delta=min_delta, relative=True
    )
    # 0.005: extensions at 0, 3, 6, ...: patience 4 never stops, 2 stops at step 2. 0.01:
    # extensions at 0, 6, 12, ... (0.998^5 = 0.99004 is not below 0.99): patience 5 stops at
    # step 5, patience 6 reaches the extension at step 6 and never stops.
    np.testing.assert_array_equal(first, [-1, 2, -1, 5, -1])
    np.testing.assert_array_equal(best, [t - 1, 2, t - 1, 5, t - 1])
    np.testing.assert_array_equal(at, best.astype(np.float32))
    assert not div.any()
    # Bengio's code measures the threshold against the previous minimum: it never extends.
    mult = run_members([seq], patience=10, patience_increase=2.0, min_delta=0.005, relative=True)
    assert mult[0][0] == -1  # extensions at 3, 6, 9, ...: deadline 2t stays ahead
    assert bengio_reference(seq, 10, 2.0, 0.995)[0] == 10


def test_flax_and_keras_test_sequences_keep_their_stop_steps():
    # flax's min_delta=1e-3, patience=1 sequence (flax stops one update later: patience 2
    # here). Significant at 0, 1, 2, 4; both stop at step 6. flax's best is step 4 (0.002);
    # the lowest seen, 0.0014 at step 6, is restored here.
    flax = [0.01, 0.005, 0.0033, 0.0025, 0.002, 0.0017, 0.0014, 0.0012, 0.0011, 0.001]
    first, best, _, at, _ = run_members([flax], patience=2, min_delta=1e-3)
    assert (first[0], best[0], at[0]) == (6, 6, 6.0)
    # Keras's patience test: stopped epoch max(patience, 1) + 2, best epoch 2 (8.0).
    keras = [10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5]
    patience = np.array([1, 2, 3], np.int32)
    first, best, *_ = run_members(np.tile(keras, (3, 1)), patience=patience)
    np.testing.assert_array_equal(first, patience + 2)
    np.testing.assert_array_equal(best, [2, 2, 2])
    # Keras's restore test: patience 2 stops at epoch 4 and restores epoch 2.
    first, best, *_ = run_members([[0.2, 0.15, 0.1, 0.11, 0.12]], patience=2)
    assert (first[0], best[0]) == (4, 2)


def test_keras_equivalent_on_random_sequences_with_vmapped_hyperparameters():
    rng = np.random.default_rng(0)
    n, t = 24, 30
    # Noisy decreasing-then-rising validation curves, one per member.
    base = np.linspace(1.0, 0.3, t)[None] + 0.02 * np.maximum(
        np.arange(t) - rng.integers(5, 25, (n, 1)), 0
    )
    seqs = base + 0.03 * rng.standard_normal((n, t))
    patience = rng.integers(1, 6, n).astype(np.int32)
    min_delta = rng.choice([0.0, 0.01, 0.05], n).astype(np.float32)
    first, best, _, at, div = run_members(seqs, patience=patience, min_delta=min_delta)
    stops = 0
    differs = 0
    for i in range(n):
        seq = seqs[i].astype(np.float32)
        ref_stop, keras_best, lowest = keras_reference(seq, patience[i], min_delta[i])
        # Keras's stop step; the lowest value seen up to it, not Keras's last significant one.
        assert (first[i], best[i]) == (ref_stop, lowest), i
        assert at[i] == best[i]  # the best params are the ones of the best step
        stops += ref_stop >= 0
        differs += keras_best != lowest
    assert stops > n // 2 and not div.any()  # most members stopped, each at its own step
    assert differs > 0  # some members restore a later, smaller-than-min_delta minimum


def test_bengio_multiplicative_increase_vs_additive():
    # Improvements at iterations 0, 4, 8, then a plateau.
    steps = np.arange(0, 40, 2)
    seq = [[1.0 / (1 + min(s, 8)) for s in steps]]
    mult = run_members(seq, steps=steps, patience=10, patience_increase=2.0)
    add = run_members(seq, steps=steps, patience=10)
    assert (mult[0][0], mult[1][0]) == (16, 8)  # deadline max(10, 8 * 2) = 16
    assert (add[0][0], add[1][0]) == (18, 8)  # deadline 8 + 10
    # A fractional product rounds the deadline up: 3 * 1.5 = 4.5 -> stop at 5, not 4.
    frac = run_members([[3.0, 2.0, 1.0, 0.5, 0.5, 0.5, 0.5]], patience=1, patience_increase=1.5)
    assert frac[0][0] == 5


def test_relative_baseline_start_step_and_max_mode():
    # Relative: 0.95 is not 10% better than 1.0, 0.85 is.
    rel = run_members([[1.0, 0.95, 0.85, 0.85, 0.85]], patience=2, min_delta=0.1, relative=True)
    assert (rel[0][0], rel[1][0]) == (4, 2)
    # Baseline: values above 0.5 do not extend the deadline, but the lowest is still saved.
    bl = run_members([[0.9, 0.8, 0.7, 0.6, 0.6, 0.6]], patience=3, baseline=0.5)
    assert (bl[0][0], bl[1][0], bl[3][0]) == (3, 3, 3.0)
    bl2 = run_members([[0.9, 0.4, 0.45, 0.45, 0.45, 0.45]], patience=3, baseline=0.5)
    assert (bl2[0][0], bl2[1][0]) == (4, 1)
    # start_step: the very good value at step 0 is ignored; the deadline starts at 2 + 2.
    ss = run_members([[0.0, 5.0, 1.0, 0.9, 0.9, 0.9, 0.9, 0.9]], patience=2, start_step=2)
    assert (ss[0][0], ss[1][0]) == (5, 3)
    # Max mode (accuracy): mirror of min mode, and a traced baseline/threshold.
    mx = run_members([[0.5, 0.7, 0.6, 0.65, 0.6]], patience=2, mode="max")
    assert (mx[0][0], mx[1][0]) == (3, 1)
    assert mx[2][0] == pytest.approx(0.7)
    # In max mode a new maximum below min_delta is saved but does not extend the deadline.
    mxs = run_members([[0.5, 0.7, 0.705, 0.6, 0.6]], patience=2, mode="max", min_delta=0.01)
    assert (mxs[0][0], mxs[1][0], mxs[3][0]) == (3, 2, 2.0)
    mxd = run_members(
        [[0.5, 0.7, 0.05]], patience=5, mode="max", divergence_threshold=np.array([0.1], np.float32)
    )
    assert (mxd[0][0], mxd[4][0]) == (2, True)


def test_nonfinite_and_divergence_stop_and_flag_per_member():
    nan, inf = math.nan, math.inf
    seqs = [
        [1.0, 0.5, nan, 0.1, 0.1],  # NaN: stops at once, the best stays at step 1
        [1.0, 0.5, inf, 0.1, 0.1],
        [1.0, 0.5, 20.0, 0.1, 0.1],  # above the divergence threshold
        [1.0, 0.5, 0.4, 0.3, 0.2],  # a healthy member is not affected
    ]
    first, best, _, at, div = run_members(seqs, patience=10, divergence_threshold=10.0)
    np.testing.assert_array_equal(first, [2, 2, 2, -1])
    np.testing.assert_array_equal(best, [1, 1, 1, 4])
    np.testing.assert_array_equal(div, [True, True, True, False])
    np.testing.assert_array_equal(at, [1.0, 1.0, 1.0, 4.0])  # frozen after the stop
    # Without stop_on_nonfinite a NaN is merely not an improvement.
    off = run_members([seqs[0]], patience=10, stop_on_nonfinite=False)
    assert (off[0][0], off[1][0], off[4][0]) == (-1, 3, False)


def test_stopped_state_never_changes_and_jit_matches_eager():
    es = early_stopping(1)
    update = jax.jit(es.update)
    state = es.init(jnp.zeros(2))
    for t, m in enumerate([1.0, 2.0, 0.1]):
        state = update(state, m, t, jnp.full(2, float(t)))
    assert bool(state.should_stop) and int(state.best_step) == 0
    np.testing.assert_array_equal(state.best_params, [0.0, 0.0])  # 0.1 came too late
    eager = es.init(jnp.zeros(2))
    for t, m in enumerate([1.0, 2.0, 0.1]):
        eager = es.update(eager, m, t, jnp.full(2, float(t)))
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(eager), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"patience": 0}, "patience"),
        ({"patience": 3, "mode": "avg"}, "mode"),
        ({"patience": 3, "min_delta": -0.1}, "min_delta"),
        ({"patience": 3, "min_delta": 1.0, "relative": True}, "min_delta"),
        ({"patience": 3, "patience_increase": 1.0}, "patience_increase"),
        ({"patience": 3, "start_step": -1}, "start_step"),
        ({"patience": math.nan}, "patience"),
        ({"patience": "3"}, "patience"),
    ],
)
def test_bad_hyperparameters_raise_at_construction(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        early_stopping(**kwargs)


def test_divergence_factor_stops_at_k_times_the_best_per_member():
    """Loss > k x its minimum so far stops and flags the member (k traced per member); the
    best is the minimum before the blow-up; below k x the minimum it trains on."""
    seqs = [
        [1.0, 0.5, 0.4, 1.7, 0.1],  # 1.7 > 4 x 0.4 = 1.6: stops at step 3
        [1.0, 0.5, 0.4, 1.5, 0.1],  # 1.5 <= 1.6: not divergence, 0.1 at step 4 is the best
        [1.0, 0.5, 0.4, 1.5, 0.1],  # k = 3: 1.5 > 1.2, stops at step 3
    ]
    k = np.array([4.0, 4.0, 3.0], np.float32)
    first, best, metric, at, div = run_members(seqs, patience=10, divergence_factor=k)
    np.testing.assert_array_equal(first, [3, -1, 3])
    np.testing.assert_array_equal(best, [2, 4, 2])
    np.testing.assert_allclose(metric, [0.4, 0.1, 0.4])
    np.testing.assert_array_equal(at, [2.0, 4.0, 2.0])  # the parameters of the best step
    np.testing.assert_array_equal(div, [True, False, True])
    with pytest.raises(ValueError, match="divergence_factor"):
        early_stopping(3, divergence_factor=1.0)
    with pytest.raises(ValueError, match='mode="min"'):
        early_stopping(3, mode="max", divergence_factor=2.0)
