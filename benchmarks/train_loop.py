"""jdl.run.fit against the training loop a Flax user writes by hand.

    python -m benchmarks.train_loop [--steps 2000] [--batch-size 128] [--eval-every 100]
        [--repeats 3]

The same MLP 64-128-128-10 on the digits, the same Adam, batch size, number of steps and
evaluations on the validation set, run three ways in one process:

1. ``jdl.run.fit``: chunks of ``eval_every`` steps in one ``lax.scan`` each, compiled once,
   state buffers donated;
2. Flax NNX as its documentation writes it: ``nnx.Optimizer`` and an ``@nnx.jit`` step called
   from Python for every batch;
3. the functional form a JAX user tunes by hand: ``@jax.jit`` step on (params, opt_state) with
   donated buffers, the batch gathered inside the step from the indices of a per-epoch
   permutation drawn on the host.

The baselines shuffle on the host with numpy, for free while the device computes; jdl
shuffles inside the compiled program (``jax.random.permutation`` per epoch, a sort), which
keeps every run a pure function of its key and lets a vmapped population draw its own batches.

Prints compile and run times (best of ``--repeats``) and the run-time ratios jdl / baseline
(< 1: jdl is faster).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from jdl.data import Dataset, digits
from jdl.losses import accuracy, softmax_cross_entropy
from jdl.models import MLP, functional
from jdl.run import fit
from jdl.train import classification

FEATURES = (64, 128, 128, 10)
LEARNING_RATE = 1e-3


def run_jdl(splits: Any, steps: int, batch_size: int, eval_every: int) -> tuple[float, float]:
    """(compile + set-up seconds, run seconds) of one ``fit``."""
    apply_fn, params = functional(MLP(FEATURES, rngs=nnx.Rngs(0)))
    loss_fn, eval_fn = classification(apply_fn)

    start = time.perf_counter()
    result = fit(
        loss_fn,
        params,
        optax.adam(LEARNING_RATE),
        splits.train,
        splits.val,
        eval_fn=eval_fn,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        progress=False,
    )
    jax.block_until_ready(result.state)
    total = time.perf_counter() - start
    run = result.history["time_s"][-1]
    assert result.history["step"][-1] == steps
    return total - run, run


def run_nnx(splits: Any, steps: int, batch_size: int, eval_every: int) -> tuple[float, float]:
    """The Flax NNX loop: ``nnx.Optimizer`` + ``@nnx.jit`` step per batch."""
    model = MLP(FEATURES, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(LEARNING_RATE), wrt=nnx.Param)
    train, val = splits.train, splits.val

    @nnx.jit
    def train_step(model: MLP, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
        def loss(model: MLP) -> jax.Array:
            return softmax_cross_entropy(model(x), y)

        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    @nnx.jit
    def eval_step(model: MLP, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits = model(x)
        return softmax_cross_entropy(logits, y), accuracy(logits, y)

    return _python_loop(
        lambda x, y: train_step(model, optimizer, x, y),
        lambda: eval_step(model, val.x, val.y),
        train,
        steps,
        batch_size,
        eval_every,
    )


def run_functional(
    splits: Any, steps: int, batch_size: int, eval_every: int
) -> tuple[float, float]:
    """The hand-tuned functional loop: ``@jax.jit`` step with donated buffers."""
    apply_fn, params = functional(MLP(FEATURES, rngs=nnx.Rngs(0)))
    tx = optax.adam(LEARNING_RATE)
    train, val = splits.train, splits.val
    state = (params, tx.init(params))

    def step(state: Any, x_all: jax.Array, y_all: jax.Array, idx: jax.Array) -> Any:
        params, opt_state = state
        x, y = x_all[idx], y_all[idx]
        value, grads = jax.value_and_grad(lambda p: softmax_cross_entropy(apply_fn(p, x), y))(
            params
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    def evaluate(params: Any) -> tuple[jax.Array, jax.Array]:
        logits = apply_fn(params, val.x)
        return softmax_cross_entropy(logits, val.y), accuracy(logits, val.y)

    start = time.perf_counter()
    idx0 = np.zeros(batch_size, np.int32)
    step_c = jax.jit(step, donate_argnums=0).lower(state, train.x, train.y, idx0).compile()
    eval_c = jax.jit(evaluate).lower(params).compile()
    compile_s = time.perf_counter() - start
    box = [state]

    def train_step(x_all: jax.Array, y_all: jax.Array, idx: jax.Array) -> jax.Array:
        box[0], value = step_c(box[0], x_all, y_all, idx)
        return value

    _, run = _python_loop(
        train_step,
        lambda: eval_c(box[0][0]),
        train,
        steps,
        batch_size,
        eval_every,
        gather=False,
    )
    return compile_s, run


def _python_loop(
    train_step: Any,
    evaluate: Any,
    train: Dataset,
    steps: int,
    batch_size: int,
    eval_every: int,
    gather: bool = True,
) -> tuple[float, float]:
    """Per-epoch permutation on the host (numpy), one jitted call per batch, an evaluation
    every ``eval_every`` steps with its metrics fetched to the host (as a progress bar or a
    history does). With ``gather`` the batch is sliced on the host and passed to the step;
    otherwise the step gets the batch's indices and gathers from the device-resident data.
    The first step and evaluation (the compilation for the nnx loop) are timed apart."""
    x_host, y_host = np.asarray(train.x), np.asarray(train.y)
    n = x_host.shape[0]
    per_epoch = n // batch_size
    rng = np.random.default_rng(0)
    history = []
    start = time.perf_counter()
    compile_s = 0.0
    for t in range(steps):
        if t % per_epoch == 0:
            perm = rng.permutation(n).astype(np.int32)
        i = t % per_epoch
        idx = perm[i * batch_size : (i + 1) * batch_size]
        batch = (x_host[idx], y_host[idx]) if gather else (train.x, train.y, idx)
        loss = train_step(*batch)
        if (t + 1) % eval_every == 0:
            history.append((float(loss), *map(float, evaluate())))
        if t == 0:
            jax.block_until_ready(loss)
            jax.block_until_ready(evaluate())
            compile_s = time.perf_counter() - start
            start = time.perf_counter()
    return compile_s, time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the three loops ``--repeats`` times and prints the best times and the ratios."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_loop")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    if min(a.steps, a.batch_size, a.eval_every, a.repeats) < 1:
        p.error("--steps, --batch-size, --eval-every and --repeats must be positive")
    splits = digits()
    loops = {
        "jdl.run.fit": run_jdl,
        "flax nnx.jit loop": run_nnx,
        "optax jax.jit loop": run_functional,
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in loops}
    for _ in range(a.repeats):  # interleaved, so that a busy machine slows every loop alike
        for name, loop in loops.items():
            runs[name].append(loop(splits, a.steps, a.batch_size, a.eval_every))
    times = {name: (min(c for c, _ in r), min(t for _, t in r)) for name, r in runs.items()}
    print(
        f"{a.steps} steps, batch {a.batch_size}, MLP {FEATURES}, Adam, evaluation every "
        f"{a.eval_every} steps, best of {a.repeats}, {jax.devices()[0].platform}"
    )
    print(f"{'loop':<22}{'compile s':>11}{'run s':>9}{'steps/s':>10}")
    for name, (c, r) in times.items():
        print(f"{name:<22}{c:>11.3f}{r:>9.3f}{a.steps / r:>10.0f}")
    jdl_run = times["jdl.run.fit"][1]
    ratios = {name: jdl_run / r for name, (_, r) in times.items() if name != "jdl.run.fit"}
    for name, ratio in ratios.items():
        print(f"run-time ratio jdl / {name}: {ratio:.3f}")
    return {"times": times, "ratios": ratios}


if __name__ == "__main__":
    main()
