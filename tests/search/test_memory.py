"""members_per_chunk="auto": the slice read from the compiled chunk, and its results."""

import jax
import numpy as np
import pytest

from jdl.search import population
from jdl.search.memory import device_budget, slice_members

from .conftest import STEPS, data_sets

LRS = [0.01, 0.03, 0.1, 0.3, 0.5, 0.7]


def test_slice_members_solves_the_linear_footprint():
    # M(P) = c + m P / D with c = 1000, m = 100 on D = 2 devices: M(2) = 1100, M(16) = 1800.
    assert slice_members(16, 1800, 1100, 2, per_device=1000 + 100 * 5) == 10
    assert slice_members(16, 1800, 1100, 2, per_device=1000 + 100 * 5 + 99) == 10
    assert slice_members(16, 1800, 1100, 2, per_device=10**9) == 16  # never above the whole
    with pytest.raises(ValueError, match="one member per device needs"):
        slice_members(16, 1800, 1100, 2, per_device=1099)


def test_device_budget_splits_a_given_budget_and_reads_the_host_otherwise():
    devices = jax.devices()
    assert device_budget(devices, 1000 * len(devices)) == 1000
    assert 0 < device_budget(devices) < 2**50


def test_auto_slices_fit_the_budget_and_equal_one_slice(search):
    train, val, test = data_sets()
    pop = population({"learning_rate": LRS}, seeds=[0, 1])
    d = search.num_devices
    assert search.members_that_fit(pop, train, val, None) == len(LRS)  # a tiny model fits
    full = search.footprint(pop, train, val, None, len(LRS))
    small = search.footprint(pop, train, val, None, d)
    per_config = (full - small) / (len(LRS) // d - 1)
    # A configuration holds at least its 2 seeds' parameters and best parameters.
    state = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(search._param_shapes))
    assert per_config >= 2 * 2 * state
    budget = d * (full + small) // 2  # about half the population
    part = search.members_that_fit(pop, train, val, None, budget=budget)
    assert d <= part < len(LRS) and part % d == 0
    one = search.run(pop, train, val, steps=STEPS, test=test, progress=False)
    sliced = search.run(
        pop,
        train,
        val,
        steps=STEPS,
        test=test,
        progress=False,
        members_per_chunk="auto",
        memory_budget=budget,
    )
    for name in ("val_loss", "train_loss"):
        np.testing.assert_allclose(sliced.history[name], one.history[name], rtol=1e-6)
    np.testing.assert_array_equal(sliced.steps, one.steps)
    np.testing.assert_allclose(sliced.best["test_accuracy"], one.best["test_accuracy"])


def test_memory_budget_needs_auto(search):
    train, val, _ = data_sets()
    with pytest.raises(ValueError, match='memory_budget needs members_per_chunk="auto"'):
        search.run(population({"learning_rate": LRS}), train, val, steps=STEPS, memory_budget=1)
