"""jdl.run: the one driver between compiled chunks, and `fit`, a single run on it.

`drive` is the only Python loop between compiled chunks in jdl: `fit`, `jdl.search.Search.run`,
successive halving, population-based training and the adaptive re-estimation all train
through it, with its progress bar, Ctrl-C handling, history, checkpoints and resume. `RunSpec`
names a run's parts once, for a single run and a population alike; the boundary's checks
(`check_data`, `check_functions`) run before anything compiles.
"""

from jdl.run.boundary import check_data, check_functions
from jdl.run.checkpoint import (
    Checkpoints,
    ConfigurationMismatchError,
    fingerprint,
    load_params,
    save_params,
)
from jdl.run.compile_cache import use_compile_cache
from jdl.run.driver import Outcome, Progress, Run, Scheduler, drive
from jdl.run.fit import FitResult, fit
from jdl.run.pretraining import LayerwisePretraining, fine_tune, pretrain_layerwise
from jdl.run.spec import RunSpec
from jdl.run.tensorboard import TensorBoard, read_scalars

__all__ = [
    "Checkpoints",
    "ConfigurationMismatchError",
    "FitResult",
    "LayerwisePretraining",
    "Outcome",
    "Progress",
    "Run",
    "RunSpec",
    "Scheduler",
    "TensorBoard",
    "check_data",
    "check_functions",
    "drive",
    "fine_tune",
    "fingerprint",
    "fit",
    "load_params",
    "pretrain_layerwise",
    "read_scalars",
    "save_params",
    "use_compile_cache",
]
