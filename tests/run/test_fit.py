"""fit: training to convergence, early stopping, one compile, progress bar, checkpoints and
resuming after a kill (in a subprocess)."""

import contextlib
import io
import logging
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jdl.data import Dataset
from jdl.run import Checkpoints, fit
from jdl.train import early_stopping

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def problem():
    """A tiny logistic regression with label noise: data, init params, loss and eval fns."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -1.0, 0.5, 0.0]) + 0.5 * rng.standard_normal(96)) > 0
    data = Dataset(jnp.asarray(x), jnp.asarray(y.astype(np.int32)))
    train, val = Dataset(data.x[:64], data.y[:64]), Dataset(data.x[64:], data.y[64:])

    def logits(params, x):
        return x @ params["w"] + params["b"][None]

    def loss_fn(params, batch, key):
        # The key adds input noise, so the run depends on the per-step keys too.
        noisy = batch.x + 0.1 * jax.random.normal(key, batch.x.shape)
        out = logits(params, noisy)
        return optax.softmax_cross_entropy_with_integer_labels(out, batch.y).mean(), {}

    def eval_fn(params, data):
        out = logits(params, data.x)
        return {
            "loss": optax.softmax_cross_entropy_with_integer_labels(out, data.y).mean(),
            "accuracy": jnp.mean(jnp.argmax(out, -1) == data.y),
        }

    params = {"w": jnp.zeros((4, 2)), "b": jnp.zeros(2)}
    return train, val, params, loss_fn, eval_fn


def run(checkpoint_dir=None, callback=None, progress=False):
    """200 steps at most, evaluated every 10; early stopping ends it sooner."""
    train, val, params, loss_fn, eval_fn = problem()
    return fit(
        loss_fn,
        params,
        optax.adam(0.05),
        train,
        val,
        eval_fn=eval_fn,
        steps=200,
        batch_size=16,
        eval_every=10,
        key=3,
        progress=progress,
        early_stopping=early_stopping(30, min_delta=1e-3),
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=2,
        callback=callback,
    )


@pytest.fixture(scope="module")
def reference():
    """The uninterrupted run, with its progress bar and the compilations it logged."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    err = io.StringIO()
    try:
        with jax.log_compiles(), contextlib.redirect_stderr(err):
            result = run(progress=True)
    finally:
        logger.removeHandler(handler)
    compiles = [r for r in records if "Compiling jit(chunk)" in r.getMessage()]
    return result, len(compiles), err.getvalue()


def test_fit_trains_once_compiled_with_history_and_early_stopping(reference):
    result, compiles, bar = reference
    assert compiles == 1
    h = result.history
    assert set(h) == {"step", "time_s", "train_loss", "val_loss", "val_accuracy"}
    assert all(isinstance(v, float) for v in h["val_loss"])
    assert h["step"] == list(range(10, h["step"][-1] + 1, 10))
    assert h["train_loss"][-1] < 0.7 * h["train_loss"][0] and max(h["val_accuracy"]) > 0.75
    # Early stopping (patience in optimizer steps) ended the run before its 200 steps.
    stop = result.state.stop
    assert bool(stop.should_stop) and not bool(stop.diverged) and h["step"][-1] < 200
    best = h["step"].index(int(stop.best_step))
    # Every new minimum is saved; only the last significant one (1e-3 below the one before)
    # set the deadline, 30 steps before the stop.
    assert h["val_loss"][best] == pytest.approx(min(h["val_loss"]), rel=1e-6)
    extended = [v == pytest.approx(float(stop.reference_metric), rel=1e-6) for v in h["val_loss"]]
    assert h["step"][-1] >= h["step"][extended.index(True)] + 30
    _, _, _, _, eval_fn = problem()
    val = problem()[1]
    np.testing.assert_allclose(
        eval_fn(result.best_params, val)["loss"], h["val_loss"][best], rtol=1e-6
    )
    assert f"{h['step'][-1]}/200" in bar and "val_loss" in bar  # the progress bar


def test_the_callers_key_and_params_survive_the_donation():
    """fit donates its state to the compiled chunks: its own copies, never the caller's."""
    train, val, params, loss_fn, eval_fn = problem()
    key = jax.random.key(3)
    common = {"eval_fn": eval_fn, "steps": 10, "batch_size": 8, "progress": False}
    first = fit(loss_fn, params, optax.sgd(0.1), train, val, key=key, **common)
    again = fit(loss_fn, params, optax.sgd(0.1), train, val, key=key, **common)  # not deleted
    np.testing.assert_array_equal(first.state.params["w"], again.state.params["w"])
    assert not params["w"].is_deleted()


def test_fit_checks_its_arguments():
    train, val, params, loss_fn, eval_fn = problem()
    common = {"eval_fn": eval_fn, "batch_size": 8, "progress": False}
    with pytest.raises(ValueError, match="steps must be a positive int"):
        fit(loss_fn, params, optax.sgd(0.1), train, val, steps=0, **common)
    with pytest.raises(ValueError, match="eval_every"):
        fit(loss_fn, params, optax.sgd(0.1), train, val, steps=5, eval_every=-1, **common)
    with pytest.raises(TypeError, match="val"):
        fit(loss_fn, params, optax.sgd(0.1), train, (val.x, val.y), steps=5, **common)


def test_resume_after_kill_reproduces_the_uninterrupted_run(tmp_path, reference, capsys):
    full = reference[0]
    ckpt = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"}
    killed = subprocess.run(
        [sys.executable, __file__, str(ckpt), "3"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == 17, killed.stderr[-2000:]
    with Checkpoints(ckpt, fingerprint={}) as c:
        assert c.latest() == 2  # saved every 2 chunks (of 10 steps); killed after 3
    capsys.readouterr()
    resumed = run(checkpoint_dir=ckpt)
    assert capsys.readouterr().err == ""  # progress=False prints nothing
    for a, b in zip(
        jax.tree.leaves(resumed.state.params), jax.tree.leaves(full.state.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    for k in ("step", "train_loss", "val_loss", "val_accuracy"):
        assert resumed.history[k] == full.history[k], k
    assert int(resumed.state.stop.best_step) == int(full.state.stop.best_step)
    for a, b in zip(
        jax.tree.leaves(resumed.best_params), jax.tree.leaves(full.best_params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    with Checkpoints(ckpt, fingerprint={}) as c:
        assert c.latest() == len(full.history["step"])  # the final state is saved
    # A finished run resumes to its end without training again.
    again = run(checkpoint_dir=ckpt)
    assert again.history == resumed.history
    # Another model, optimizer or budget cannot resume from this run's checkpoints.
    train, val, params, loss_fn, eval_fn = problem()
    with pytest.raises(ValueError, match=r"another configuration \(differs in: .*params, program"):
        fit(
            loss_fn,
            {**params, "extra": jnp.zeros(3)},
            optax.adam(0.05),
            train,
            val,
            eval_fn=eval_fn,
            steps=200,
            batch_size=16,
            progress=False,
            checkpoint_dir=ckpt,
        )
    cases = (({"optimizer": optax.adam(0.06)}, "program"), ({"steps": 190}, "program, steps"))
    for change, differs in cases:
        kwargs = {"optimizer": optax.adam(0.05), "steps": 200, **change}
        with pytest.raises(ValueError, match=rf"differs in: {differs}\)"):
            fit(
                loss_fn,
                params,
                kwargs["optimizer"],
                train,
                val,
                eval_fn=eval_fn,
                steps=kwargs["steps"],
                batch_size=16,
                eval_every=10,
                key=3,
                early_stopping=early_stopping(30, min_delta=1e-3),
                progress=False,
                checkpoint_dir=ckpt,
            )


if __name__ == "__main__":
    # The killed run: exits hard (no clean-up) after the chunk given on the command line.
    kill_after = int(sys.argv[2])
    chunks = []

    def die(state, metrics):
        chunks.append(int(state.step))
        if len(chunks) == kill_after:
            os._exit(17)

    run(checkpoint_dir=sys.argv[1], callback=die)
