"""jdl.models: Flax NNX modules and the functional boundary around them."""

from jdl.models.functional import from_linen, functional
from jdl.models.mlp import MLP

__all__ = ["MLP", "from_linen", "functional"]
