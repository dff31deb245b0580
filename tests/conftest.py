"""Test-wide settings: strict rank promotion, as equinox runs its tests."""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
