"""jdl.train: what one compiled chunk is made of (state, step, chunk, early stopping, losses).

The loop that calls the chunks is the run driver, `jdl.run` (`jdl.run.fit` for one run).
"""

from jdl.train.chunk import ChunkFn, make_chunk
from jdl.train.early_stopping import EarlyStopping, EarlyStoppingState, early_stopping
from jdl.train.objectives import classification
from jdl.train.state import TrainState, init_state
from jdl.train.step import batch_step, train_step

__all__ = [
    "ChunkFn",
    "EarlyStopping",
    "EarlyStoppingState",
    "TrainState",
    "batch_step",
    "classification",
    "early_stopping",
    "init_state",
    "make_chunk",
    "train_step",
]
