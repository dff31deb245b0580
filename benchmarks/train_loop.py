"""jdl.run.fit against the training loops a JAX or Flax user writes by hand.

    python -m benchmarks.train_loop [--steps 2000] [--batch-size 128] [--eval-every 100]
        [--repeats 3]

The same MLP 64-128-128-10 on the digits, the same Adam, batch size, number of steps and
evaluations on the validation set, run five ways in one process:

1. ``jdl.run.fit``: chunks of ``eval_every`` steps in one ``lax.scan`` each, compiled once,
   state buffers donated;
2. Flax NNX as its basic tutorial writes it: ``nnx.Optimizer`` and an ``@nnx.jit`` step called
   from Python for every batch;
3. Flax NNX as its performance guide advises: the same step through ``nnx.cached_partial``,
   which caches the traversal of the model and optimizer graph between calls;
4. the functional form a JAX user tunes by hand: ``@jax.jit`` step on (params, opt_state) with
   donated buffers, the batch gathered inside the step from the indices of a per-epoch
   permutation drawn on the host;
5. the same written as jdl is: a hand-written ``jax.jit(lax.scan)`` of ``eval_every`` steps
   (indices drawn on the host for the whole chunk) followed by the evaluation, donated buffers,
   compiled ahead of time as ``fit`` compiles its chunk.

Every variant is timed alike: the clock starts before the model is built (initialisation inside
every timer), and stops once the final parameters are ready (``block_until_ready``). The
headline is this wall time, compilation included; compile time (the first call) and run time
(the rest) are reported beside it. Every variant is the best of the same ``--repeats`` runs,
interleaved so that a busy machine slows them alike, and the ratios come from one process run.

The baselines shuffle on the host with numpy, for free while the device computes; jdl shuffles
inside the compiled program (``jax.random.permutation`` per epoch, a sort), which keeps every
run a pure function of its key and lets a vmapped population draw its own batches.
"""

from __future__ import annotations

import argparse
import functools
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


Times = tuple[float, float, float]  # (wall, compile, run) seconds


def run_jdl(splits: Any, steps: int, batch_size: int, eval_every: int) -> Times:
    """One ``fit``: its history's clock is the run time; the rest of the wall time is set-up
    and compilation."""
    start = time.perf_counter()
    apply_fn, params = functional(MLP(FEATURES, rngs=nnx.Rngs(0)))
    loss_fn, eval_fn = classification(apply_fn)
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
    jax.block_until_ready(result.state.params)
    wall = time.perf_counter() - start
    run = result.history["time_s"][-1]
    assert result.history["step"][-1] == steps
    return wall, wall - run, run


def run_nnx(
    splits: Any, steps: int, batch_size: int, eval_every: int, cached: bool = False
) -> Times:
    """The Flax NNX loop: ``nnx.Optimizer`` + ``@nnx.jit`` step per batch; with ``cached``, the
    step and the evaluation through ``nnx.cached_partial`` (the performance guide's advice)."""
    start = time.perf_counter()
    model = MLP(FEATURES, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(LEARNING_RATE), wrt=nnx.Param)
    train, val = splits.train, splits.val

    @nnx.jit(graph=True, graph_updates=True)
    def train_step(model: MLP, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
        def loss(model: MLP) -> jax.Array:
            return softmax_cross_entropy(model(x), y)

        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    @nnx.jit(graph=True, graph_updates=True)
    def eval_step(model: MLP, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits = model(x)
        return softmax_cross_entropy(logits, y), accuracy(logits, y)

    if cached:
        with nnx.set_graph_mode(True), nnx.set_graph_updates(True):
            step_fn = nnx.cached_partial(train_step, model, optimizer)
            eval_fn = nnx.cached_partial(eval_step, model)
    else:
        step_fn = functools.partial(train_step, model, optimizer)
        eval_fn = functools.partial(eval_step, model)
    return _python_loop(
        step_fn,
        lambda: eval_fn(val.x, val.y),
        lambda: nnx.state(model, nnx.Param),
        train,
        steps,
        batch_size,
        eval_every,
        start,
    )


def run_nnx_cached(splits: Any, steps: int, batch_size: int, eval_every: int) -> Times:
    """`run_nnx` with ``nnx.cached_partial``."""
    return run_nnx(splits, steps, batch_size, eval_every, cached=True)


def run_functional(splits: Any, steps: int, batch_size: int, eval_every: int) -> Times:
    """The hand-tuned functional loop: ``@jax.jit`` step with donated buffers."""
    start = time.perf_counter()
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

    step_c = jax.jit(step, donate_argnums=0)
    eval_c = jax.jit(evaluate)
    box = [state]

    def train_step(x_all: jax.Array, y_all: jax.Array, idx: jax.Array) -> jax.Array:
        box[0], value = step_c(box[0], x_all, y_all, idx)
        return value

    return _python_loop(
        train_step,
        lambda: eval_c(box[0][0]),
        lambda: box[0][0],
        train,
        steps,
        batch_size,
        eval_every,
        start,
        gather=False,
    )


def run_scan(splits: Any, steps: int, batch_size: int, eval_every: int) -> Times:
    """The hand-written compiled chunk: ``jax.jit`` of a ``lax.scan`` over ``eval_every`` steps
    whose batch indices come from the host, then the evaluation, donated buffers."""
    start = time.perf_counter()
    apply_fn, params = functional(MLP(FEATURES, rngs=nnx.Rngs(0)))
    tx = optax.adam(LEARNING_RATE)
    train, val = splits.train, splits.val

    @functools.partial(jax.jit, donate_argnums=0)
    def chunk(state: Any, x_all: jax.Array, y_all: jax.Array, idx: jax.Array) -> Any:
        def step(state: Any, idx: jax.Array) -> tuple[Any, jax.Array]:
            params, opt_state = state
            x, y = x_all[idx], y_all[idx]
            value, grads = jax.value_and_grad(lambda p: softmax_cross_entropy(apply_fn(p, x), y))(
                params
            )
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        state, values = jax.lax.scan(step, state, idx)
        logits = apply_fn(state[0], val.x)
        metrics = softmax_cross_entropy(logits, val.y), accuracy(logits, val.y)
        return state, (values[-1], *metrics)

    x_host = np.asarray(train.x)
    n = x_host.shape[0]
    per_epoch = n // batch_size
    rng = np.random.default_rng(0)
    state, history = (params, tx.init(params)), []
    # Compiled ahead, as fit does, for each chunk length the run needs.
    lengths = {min(eval_every, steps - first) for first in range(0, steps, eval_every)}
    compiled = {
        count: chunk.lower(
            state, train.x, train.y, np.zeros((count, batch_size), np.int32)
        ).compile()
        for count in lengths
    }
    compile_s = time.perf_counter() - start
    for first in range(0, steps, eval_every):
        count = min(eval_every, steps - first)
        rows = []
        for t in range(first, first + count):
            if t % per_epoch == 0:
                perm = rng.permutation(n).astype(np.int32)
            i = t % per_epoch
            rows.append(perm[i * batch_size : (i + 1) * batch_size])
        state, metrics = compiled[count](state, train.x, train.y, np.stack(rows))
        history.append(tuple(map(float, metrics)))
    jax.block_until_ready(state[0])
    wall = time.perf_counter() - start
    return wall, compile_s, wall - compile_s


def _python_loop(
    train_step: Any,
    evaluate: Any,
    final_params: Any,
    train: Dataset,
    steps: int,
    batch_size: int,
    eval_every: int,
    start: float,
    gather: bool = True,
) -> Times:
    """Per-epoch permutation on the host (numpy), one jitted call per batch, an evaluation
    every ``eval_every`` steps with its metrics fetched to the host (as a progress bar or a
    history does). With ``gather`` the batch is sliced on the host and passed to the step;
    otherwise the step gets the batch's indices and gathers from the device-resident data.
    The first step and evaluation, which compile, are the compile time; the clock stops when
    ``final_params()`` is ready."""
    x_host, y_host = np.asarray(train.x), np.asarray(train.y)
    n = x_host.shape[0]
    per_epoch = n // batch_size
    rng = np.random.default_rng(0)
    history = []
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
            jax.block_until_ready((loss, evaluate()))
            compile_s = time.perf_counter() - start
    jax.block_until_ready(final_params())
    wall = time.perf_counter() - start
    return wall, compile_s, wall - compile_s


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
        "flax nnx cached_partial": run_nnx_cached,
        "optax jax.jit loop": run_functional,
        "hand-written lax.scan": run_scan,
    }
    runs: dict[str, list[Times]] = {name: [] for name in loops}
    for _ in range(a.repeats):  # interleaved, so that a busy machine slows every loop alike
        for name, loop in loops.items():
            runs[name].append(loop(splits, a.steps, a.batch_size, a.eval_every))
    # Best of the same runs for every variant, each column apart.
    times = {
        name: tuple(min(column) for column in zip(*r, strict=True)) for name, r in runs.items()
    }
    print(
        f"{a.steps} steps, batch {a.batch_size}, MLP {FEATURES}, Adam, evaluation every "
        f"{a.eval_every} steps, best of {a.repeats}, {jax.devices()[0].platform}"
    )
    print(
        f"{'loop':<26}{'wall s':>8}{'compile s':>11}{'run s':>8}{'steps/s':>9}"
        f"{'jdl wall ratio':>16}{'jdl run ratio':>15}"
    )
    jdl_wall, _, jdl_run = times["jdl.run.fit"]
    ratios = {}
    for name, (wall, c, r) in times.items():
        ratios[name] = {"wall": jdl_wall / wall, "run": jdl_run / r}
        print(
            f"{name:<26}{wall:>8.3f}{c:>11.3f}{r:>8.3f}{a.steps / r:>9.0f}"
            f"{ratios[name]['wall']:>16.3f}{ratios[name]['run']:>15.3f}"
        )
    print("ratios are jdl's time / the loop's time (< 1: jdl is faster); wall includes compiling")
    del ratios["jdl.run.fit"]
    return {"times": times, "ratios": ratios}


if __name__ == "__main__":
    main()
