"""Samplers: reproducible draws by number, the distributions' ranges and quantiles, errors."""

import math

import numpy as np
import pytest

from jdl.search import population
from jdl.search.samplers import (
    Sampler,
    categorical,
    integer,
    log_uniform,
    random_search,
    uniform,
)

SPACE = {
    "learning_rate": log_uniform(1e-4, 1.0),
    "b1": uniform(0.5, 0.99),
    "width": integer(2, 5),
    "family": categorical([0, 1, 2]),
}


@pytest.mark.parametrize("method", ["random", "sobol", "halton"])
def test_draw_i_is_the_same_whatever_came_before(method):
    sampler = Sampler(SPACE, seed=3, method=method)
    whole = sampler.draw(0, 12)
    again = Sampler(SPACE, seed=3, method=method).draw(0, 12)
    tail = sampler.draw(7, 5)
    for k in SPACE:
        np.testing.assert_array_equal(whole[k], again[k])
        np.testing.assert_array_equal(whole[k][7:], tail[k])
    other = Sampler(SPACE, seed=4, method=method).draw(0, 12)
    assert not np.array_equal(whole["learning_rate"], other["learning_rate"])


@pytest.mark.parametrize("method", ["random", "sobol", "halton"])
def test_values_lie_in_their_space(method):
    d = Sampler(SPACE, seed=0, method=method).draw(0, 256)
    assert np.all((d["learning_rate"] >= 1e-4) & (d["learning_rate"] <= 1.0))
    assert np.all((d["b1"] >= 0.5) & (d["b1"] <= 0.99))
    assert set(d["width"].tolist()) == {2.0, 3.0, 4.0, 5.0}  # every integer, both ends
    assert set(d["family"].tolist()) == {0.0, 1.0, 2.0}


def test_sobol_stratifies_the_log_scale():
    # 16 scrambled Sobol points in one dimension: exactly one in each sixteenth of [0, 1),
    # hence one learning rate in each sixteenth of the decades 1e-4 .. 1.
    lr = Sampler({"learning_rate": log_uniform(1e-4, 1.0)}, seed=1, method="sobol").draw(0, 16)
    cells = np.floor((np.log10(lr["learning_rate"]) + 4) / 4 * 16).astype(int)
    assert sorted(cells.tolist()) == list(range(16))


def test_log_uniform_is_uniform_in_the_exponent():
    lr = Sampler({"lr": log_uniform(1e-4, 1.0)}, seed=0).draw(0, 4000)["lr"]
    exponent = np.log10(lr)
    assert abs(exponent.mean() + 2.0) < 0.05  # the mean of U(-4, 0)
    assert abs(exponent.std() - 4 / math.sqrt(12)) < 0.05


def test_random_search_is_a_population_of_the_first_draws():
    pop = random_search(SPACE, 6, seeds=[0, 2], seed=5, method="halton")
    drawn = Sampler(SPACE, seed=5, method="halton").draw(0, 6)
    expected = population(drawn, [0, 2])
    assert pop.seeds.tolist() == [0, 2] and pop.num_configs == 6
    for k in SPACE:
        np.testing.assert_array_equal(pop.hparams[k], expected.hparams[k])


def test_bad_spaces_are_refused():
    with pytest.raises(ValueError, match="low must be finite and > 0"):
        log_uniform(0.0, 1.0)
    with pytest.raises(ValueError, match="low must be <= high"):
        uniform(2.0, 1.0)
    with pytest.raises(ValueError, match="must be an int"):
        integer(1.5, 3)
    with pytest.raises(ValueError, match="non-empty list of numbers"):
        categorical([])
    with pytest.raises(ValueError, match="method must be one of"):
        Sampler(SPACE, method="grid")
    with pytest.raises(TypeError, match="must be built by log_uniform"):
        Sampler({"lr": (1e-4, 1.0)})
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        Sampler(SPACE, seed=-1)
