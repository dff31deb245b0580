"""jdl.run.Checkpoints on its own: a corrupt latest checkpoint falls back to the one before it
with a warning, a folder that is a file is a clear error, another fingerprint is refused."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdl.run import Checkpoints, ConfigurationMismatchError


def state(value):
    return {"w": jnp.full((3,), value, jnp.float32), "key": jax.random.key(int(value))}


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    with Checkpoints(tmp_path, fingerprint={"run": "a"}) as c:
        c.save(1, state(1.0), {"history": [1]})
        c.save(2, state(2.0), {"history": [1, 2]})
    # Damage every file of the latest checkpoint's state (a disk error, a partial copy).
    for folder, _, files in os.walk(tmp_path / "2" / "state"):
        for name in files:
            with open(os.path.join(folder, name), "wb") as f:
                f.write(b"\0garbage")
    with (
        Checkpoints(tmp_path, fingerprint={"run": "a"}) as c,
        pytest.warns(RuntimeWarning, match="cannot read the checkpoint after chunk 2"),
    ):
        chunk, restored, record = c.restore(state(0.0))
    assert chunk == 1 and record["history"] == [1]
    np.testing.assert_array_equal(restored["w"], np.ones(3, np.float32))
    assert (
        jax.random.key_data(restored["key"]).tolist()
        == jax.random.key_data(jax.random.key(1)).tolist()
    )


def test_another_fingerprint_is_refused_and_a_file_is_not_a_folder(tmp_path):
    with Checkpoints(tmp_path / "c", fingerprint={"run": "a", "steps": "1"}) as c:
        c.save(1, state(1.0), {})
    with (
        Checkpoints(tmp_path / "c", fingerprint={"run": "a", "steps": "2"}) as c,
        pytest.raises(ConfigurationMismatchError, match=r"differs in: steps\)"),
    ):
        c.verify()
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        Checkpoints(tmp_path / "f", fingerprint={})
