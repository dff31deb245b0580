"""TensorBoard event files from fit: the scalars written equal the history (read back)."""

import numpy as np
import optax

from jdl.run import fit, read_scalars

from .test_fit_errors import PARAMS, TRAIN, VAL, eval_fn, loss_fn


def test_fit_writes_its_history(tmp_path):
    result = fit(
        loss_fn,
        PARAMS,
        optax.sgd(0.1),
        TRAIN,
        VAL,
        eval_fn=eval_fn,
        steps=12,
        batch_size=8,
        eval_every=4,
        progress=False,
        tensorboard=tmp_path,
    )
    scalars = read_scalars(tmp_path)["."]
    assert set(scalars) == {"train_loss", "val_loss"}
    for tag, points in scalars.items():
        assert [s for s, _ in points] == result.history["step"] == [4, 8, 12]
        np.testing.assert_allclose([v for _, v in points], result.history[tag], rtol=1e-6)
