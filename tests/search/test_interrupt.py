"""jdl.search.Search.run interrupted by Ctrl-C: it returns the members as far as they got.

The interrupts are injected at a chosen chunk (a KeyboardInterrupt raised by ``advance``, or a
SIGINT sent by the process to itself with ``signal.raise_signal``, whose Python handler runs
before the next bytecode): deterministic, no timing.
"""

import signal

import numpy as np
import pytest

from jdl.search import population
from jdl.search.sharding import padded_size

from .conftest import CHUNK, STEPS

LRS = [0.05, 0.2]

pytestmark = pytest.mark.usefixtures("interactive_sigint")


def interrupt_at(monkeypatch, search, call, how):
    """``search.advance`` interrupted at its ``call``-th call: ``"raise"`` raises
    KeyboardInterrupt before the chunk; ``"signal"`` sends SIGINT once the chunk is dispatched
    (its state donated); ``"signal twice"`` sends two."""
    original = search.advance
    calls = []

    def advance(*args, **kwargs):
        calls.append(1)
        if len(calls) == call and how == "raise":
            raise KeyboardInterrupt
        out = original(*args, **kwargs)
        if len(calls) == call:
            signal.raise_signal(signal.SIGINT)
            if how == "signal twice":
                signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(search, "advance", advance)
    return calls


def run(search, data, lrs=LRS, **kwargs):
    train, val, test = data
    pop = population({"learning_rate": lrs}, seeds=1)
    return search.run(pop, train, val, steps=STEPS, test=test, progress=False, **kwargs)


@pytest.fixture(scope="module")
def reference(search, data):
    """The same search uninterrupted."""
    return run(search, data)


@pytest.mark.parametrize(("how", "call", "chunks"), [("raise", 2, 1), ("signal", 2, 2)])
def test_interrupted_run_keeps_the_chunks_run(
    search, data, reference, monkeypatch, how, call, chunks
):
    """A KeyboardInterrupt raised before chunk 2 keeps chunk 1; a Ctrl-C while chunk 2 is
    dispatched waits for it, then stops."""
    compilations = search.compilations
    calls = interrupt_at(monkeypatch, search, call, how)
    result = run(search, data)
    assert result.interrupted and not reference.interrupted
    assert len(calls) == call  # the loop stopped there
    assert search.compilations == compilations  # nothing new compiled
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    assert result.population.num_configs == len(LRS)
    np.testing.assert_array_equal(result.steps, chunks * CHUNK)
    assert not result.stopped_early.any() and not result.diverged.any()
    # The chunks run, as the uninterrupted search had them; NaN after them.
    for k in ("train_loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(result.final[k], reference.history[k][chunks - 1], rtol=1e-6)
        np.testing.assert_allclose(
            result.history[k][:chunks], reference.history[k][:chunks], rtol=1e-6
        )
        assert np.isnan(result.history[k][chunks:]).all()
    best = np.min(reference.history["val_loss"][:chunks], axis=0)
    np.testing.assert_allclose(result.best_val_loss, best, rtol=1e-6)
    assert np.isfinite(result.best["test_accuracy"]).all()
    assert result.timing["member_steps"] == chunks * CHUNK * len(LRS)


@pytest.mark.parametrize(("how", "call"), [("signal", 1), ("signal twice", 2), ("raise", 1)])
def test_interrupt_with_nothing_to_keep_or_twice_propagates(search, data, monkeypatch, how, call):
    """While the first chunk is dispatched (or compiled) there is nothing to keep: a Ctrl-C
    raises at once; a second Ctrl-C means abort."""
    interrupt_at(monkeypatch, search, call, how)
    with pytest.raises(KeyboardInterrupt):
        run(search, data)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_interrupted_slices_keep_those_that_ran(search, data, monkeypatch):
    """With members_per_chunk, a slice interrupted before its first chunk is left out."""
    lrs = [0.05, 0.1, 0.2, 0.4]
    part = padded_size(len(LRS), search.num_devices)  # the slices' size: compiled already
    if len(lrs) <= part:
        pytest.skip("needs more configurations than devices")
    original, inits = search.init, []

    def init(*args, **kwargs):
        inits.append(1)
        if len(inits) == 2:  # the second slice
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(search, "init", init)
    compilations = search.compilations
    result = run(search, data, lrs, members_per_chunk=len(LRS))
    assert result.interrupted and search.compilations == compilations
    np.testing.assert_allclose(result.population.hparams["learning_rate"], lrs[:part])
    assert (result.steps > 0).all() and np.isfinite(result.best_val_loss).all()
    assert result.history["val_loss"].shape == (STEPS // CHUNK, 1, part)


def test_interrupt_that_lost_the_state_propagates(search, data, monkeypatch):
    """Under a SIGINT handler not Python's default (left alone), a KeyboardInterrupt that
    lands once a chunk took the state's buffers propagates: there is no state to return."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        interrupt_at(monkeypatch, search, 2, "signal")
        with pytest.raises(KeyboardInterrupt):
            run(search, data)
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("scheduler", ["halving", "pbt"])
def test_schedulers_interrupted_keep_the_chunks_run(search, data, monkeypatch, scheduler):
    """Ctrl-C during successive halving or PBT behaves as for a grid: the members as far as
    they got, marked interrupted."""
    import jax

    from jdl.search import population_based_training, successive_halving

    train, val, _ = data
    pop = population({"learning_rate": LRS}, seeds=1)
    interrupt_at(monkeypatch, search, 2, "signal")
    if scheduler == "halving":
        out = successive_halving(search, pop, train, val, rung_steps=CHUNK, rungs=2, progress=False)
    else:
        out = population_based_training(
            search,
            pop,
            train,
            val,
            steps=STEPS,
            ready_steps=CHUNK,
            key=jax.random.key(0),
            fraction=0.5,
            progress=False,
        )
    assert out.result.interrupted
    np.testing.assert_array_equal(out.result.steps, 2 * CHUNK)
    assert np.isfinite(out.result.best_val_loss).all()
