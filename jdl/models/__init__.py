"""jdl.models: Flax NNX modules and the functional boundary around them (`functional`,
`from_linen`; `stateful` for models with state beyond their parameters, such as BatchNorm)."""

from jdl.models.autoencoder import Autoencoder
from jdl.models.autoencoder_losses import (
    autoencoder_loss,
    contractive_loss,
    denoising_loss,
    reconstruction_metrics,
    sparse_loss,
)
from jdl.models.conv import Conv, ConvNet
from jdl.models.functional import from_linen, functional
from jdl.models.mlp import MLP
from jdl.models.stacked import stacked_classifier
from jdl.models.stateful import StatefulApplyFn, stateful
from jdl.models.tied import TiedDense
from jdl.models.width import restrict_width, width_masks

__all__ = [
    "MLP",
    "Autoencoder",
    "Conv",
    "ConvNet",
    "StatefulApplyFn",
    "TiedDense",
    "autoencoder_loss",
    "contractive_loss",
    "denoising_loss",
    "from_linen",
    "functional",
    "reconstruction_metrics",
    "restrict_width",
    "sparse_loss",
    "stacked_classifier",
    "stateful",
    "width_masks",
]
