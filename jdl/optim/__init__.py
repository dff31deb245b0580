"""jdl.optim: the course's optimizers as optax gradient transformations.

Aliases (``adam``, ``nesterov``, ...; :mod:`jdl.optim.aliases`) chain a building block
(``scale_by_adam``, ...) with the negative learning rate; the blocks are exported so that users can
compose their own. The blocks live by family (:mod:`jdl.optim.momentum_family`,
:mod:`jdl.optim.adagrad_family`, :mod:`jdl.optim.adam_family`) and follow
:mod:`jdl.optim.conventions`.
"""

from jdl.optim.adagrad_family import (
    AdadeltaState,
    AdagradState,
    scale_by_adadelta,
    scale_by_adagrad,
)
from jdl.optim.adam_family import (
    AdamaxState,
    AdamState,
    AmsgradState,
    NadamState,
    scale_by_adam,
    scale_by_adamax,
    scale_by_amsgrad,
    scale_by_nadam,
    scale_by_qhadam,
)
from jdl.optim.aliases import (
    OPTIMIZERS,
    adadelta,
    adagrad,
    adam,
    adamax,
    adamw,
    aggmo,
    amsgrad,
    momentum,
    nadam,
    nesterov,
    qhadam,
    qhm,
    sgd,
)
from jdl.optim.momentum_family import (
    AggMoState,
    MomentumState,
    QHMState,
    scale_by_aggmo,
    scale_by_momentum,
    scale_by_qhm,
)
from jdl.optim.schedules import time_constant_decay
from jdl.optim.switch import SwitchState, switch

__all__ = [
    "OPTIMIZERS",
    "AdadeltaState",
    "AdagradState",
    "AdamState",
    "AdamaxState",
    "AggMoState",
    "AmsgradState",
    "MomentumState",
    "NadamState",
    "QHMState",
    "SwitchState",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "aggmo",
    "amsgrad",
    "momentum",
    "nadam",
    "nesterov",
    "qhadam",
    "qhm",
    "scale_by_adadelta",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_aggmo",
    "scale_by_amsgrad",
    "scale_by_momentum",
    "scale_by_nadam",
    "scale_by_qhadam",
    "scale_by_qhm",
    "sgd",
    "switch",
    "time_constant_decay",
]
