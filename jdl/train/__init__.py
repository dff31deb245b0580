"""jdl.train: the functional training loop (compiled chunks, early stopping, checkpoints)."""

from jdl.train.checkpoint import Checkpoints
from jdl.train.early_stopping import EarlyStopping, EarlyStoppingState, early_stopping
from jdl.train.loop import FitResult, fit, make_chunk
from jdl.train.objectives import classification
from jdl.train.state import LossFn, TrainState, init_state
from jdl.train.step import batch_step, train_step

__all__ = [
    "Checkpoints",
    "EarlyStopping",
    "EarlyStoppingState",
    "FitResult",
    "LossFn",
    "TrainState",
    "batch_step",
    "classification",
    "early_stopping",
    "fit",
    "init_state",
    "make_chunk",
    "train_step",
]
