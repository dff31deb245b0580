"""jdl: a JAX functional training framework for deep-learning research and teaching.

Subpackages, one course concept each:

- ``jdl.optim``: the course's optimizers as optax gradient transformations, and schedules.
- ``jdl.train``: the compiled training loop, early stopping and checkpoints.
- ``jdl.search``: many training runs (hyper-parameters x seeds) as one compiled program.
- ``jdl.models``: Flax NNX modules (MLP, autoencoders) and their functional boundary.
- ``jdl.data``, ``jdl.losses``, ``jdl.regularizers``, ``jdl.augment``: the pieces of a loss.
- ``jdl.hyperparams``: the construction-time checks of hyper-parameters' concrete values.
"""

from jdl import augment, data, hyperparams, losses, models, optim, regularizers, search, train

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "augment",
    "data",
    "hyperparams",
    "losses",
    "models",
    "optim",
    "regularizers",
    "search",
    "train",
]
