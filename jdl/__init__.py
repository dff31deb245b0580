"""jdl: a JAX functional training framework for deep-learning research and teaching.

Subpackages, one course concept each:

- ``jdl.optim``: the course's optimizers as optax gradient transformations, and schedules.
- ``jdl.train``: what one compiled chunk is made of: state, step, chunk, early stopping.
- ``jdl.run``: the run driver between chunks (progress, Ctrl-C, checkpoints, resume) and `fit`.
- ``jdl.search``: many training runs (hyper-parameters x seeds) as one compiled program.
- ``jdl.models``: Flax NNX modules (MLP, autoencoders) and their functional boundary.
- ``jdl.data``, ``jdl.losses``, ``jdl.regularizers``, ``jdl.augment``: the pieces of a loss.
- ``jdl.hyperparams``: the construction-time checks of hyper-parameters' concrete values.
- ``jdl.types``: the shared aliases (``Params``, ``LossFn``, ``EvalFn``, ``HParams``, ...).
"""

from jdl import (
    augment,
    data,
    hyperparams,
    losses,
    models,
    optim,
    regularizers,
    run,
    search,
    train,
    types,
)
from jdl.run import fit

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "augment",
    "data",
    "fit",
    "hyperparams",
    "losses",
    "models",
    "optim",
    "regularizers",
    "run",
    "search",
    "train",
    "types",
]
