"""jdl.train: the functional training loop (compiled chunks, early stopping, checkpoints)."""

from jdl.train.early_stopping import EarlyStopping, EarlyStoppingState, early_stopping
from jdl.train.loop import make_chunk
from jdl.train.state import LossFn, TrainState, init_state
from jdl.train.step import train_step

__all__ = [
    "EarlyStopping",
    "EarlyStoppingState",
    "LossFn",
    "TrainState",
    "early_stopping",
    "init_state",
    "make_chunk",
    "train_step",
]
