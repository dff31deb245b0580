"""TensorBoard event files from a search: one run per member whose scalars equal its history,
and the HParams summary with each member's final metrics (read back from disk)."""

import numpy as np
import pytest

from jdl.run import read_scalars
from jdl.search import population

from .conftest import CHUNK, STEPS


def test_search_writes_one_run_per_member_and_the_hparams(search, data, tmp_path):
    train, val, test = data
    pop = population({"learning_rate": [0.05, 1e4]}, seeds=[0, 1])
    result = search.run(
        pop, train, val, steps=STEPS, test=test, progress=False, tensorboard=tmp_path
    )
    runs = read_scalars(tmp_path)
    names = {f"learning_rate={lr:.4g},seed={s}" for lr in (0.05, 1e4) for s in (0, 1)}
    assert set(runs) == names
    for h, lr in enumerate((0.05, 1e4)):
        for s in (0, 1):
            tags = runs[f"learning_rate={lr:.4g},seed={s}"]
            curve = result.history["val_loss"][:, s, h]
            written = [v for _, v in tags.get("val_loss", [])]
            np.testing.assert_allclose(written, curve[np.isfinite(curve)], rtol=1e-6)
            assert [t for t, _ in tags.get("val_loss", [])] == [
                CHUNK * (c + 1) for c in range(len(written))
            ]
            # The HParams dashboard's metrics: the member's best validation loss.
            best = result.best_val_loss[s, h]
            if np.isfinite(best):
                assert tags["hparam/best_val_loss"][0][1] == pytest.approx(best, rel=1e-6)
    assert len(runs[f"learning_rate={1e4:.4g},seed=0"].get("val_loss", [])) < STEPS // CHUNK
