"""Fixtures of the optimizer tests."""

import jax
import pytest


@pytest.fixture
def x64():
    """Enable float64 for one test and restore the previous setting afterwards."""
    with jax.enable_x64(True):
        yield
