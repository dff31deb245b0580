"""The learning-rate searches users write by hand, timed as benchmarks.lr_search times jdl.

Every function times one cold run: the clock starts before the members' parameters are
initialised, every program it calls is compiled inside it (a fresh ``jax.jit`` each time), and
it stops when the last parameters are ready (``block_until_ready``). Each returns
``{"wall_s", "compile_s", "run_s", "member_steps"}`` and, where the program can run again
without compiling, ``rerun() -> seconds`` timed the same way (initialisation included).
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from benchmarks.machine import BATCH, FEATURES, setup
from jdl.losses import softmax_cross_entropy
from jdl.search import member_mesh


def _host_batches(n: int, steps: int, seed: int) -> np.ndarray:
    """Batch indices as a Python loop draws them: a NumPy permutation per epoch."""
    rng = np.random.default_rng(seed)
    per_epoch = n // BATCH
    idx = [rng.permutation(n)[: per_epoch * BATCH].reshape(per_epoch, BATCH)]
    while sum(len(i) for i in idx) < steps:
        idx.append(rng.permutation(n)[: per_epoch * BATCH].reshape(per_epoch, BATCH))
    return np.concatenate(idx)[:steps]


def sequential(
    lrs: np.ndarray, steps: int, eval_every: int, *, reuse: bool, workload: str = "mlp"
) -> dict[str, float]:
    """One run of ``workload`` (`benchmarks.machine.setup`) after another, a jitted step called
    from Python, the validation loss evaluated every ``eval_every`` steps (as jdl does) by one
    jitted function; ``reuse``: one step compiled for all runs (the learning rate an argument),
    else ``optax.adam(lr)`` built and compiled per run. ``compile_s`` is the time of each
    run's first call (its compile, when it must, and one step); ``run_s`` the rest."""
    w = setup(workload)
    apply_fn, init_fn, train, val = w.apply_fn, w.init_fn, w.train, w.val
    x, y = np.asarray(train.x), np.asarray(train.y)
    batches = _host_batches(len(x), steps, 0)

    def loss(params: Any, xb: jax.Array, yb: jax.Array) -> jax.Array:
        return softmax_cross_entropy(apply_fn(params, xb), yb)

    @jax.jit
    def shared_step(params: Any, opt_state: Any, lr: jax.Array, xb: jax.Array, yb: jax.Array):
        grads = jax.grad(loss)(params, xb, yb)
        updates, opt_state = optax.adam(lr).update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    @jax.jit
    def val_loss(params: Any) -> jax.Array:
        return loss(params, val.x, val.y)

    compile_s = 0.0
    start = time.perf_counter()
    for lr in lrs:
        best = math.inf
        params = init_fn(jax.random.key(0))
        tx = optax.adam(float(lr))
        opt_state = tx.init(params)
        if reuse:
            lr_arg = jnp.float32(lr)

            def step(p, s, xb, yb, lr=lr_arg):
                return shared_step(p, s, lr, xb, yb)
        else:

            @jax.jit
            def step(p, s, xb, yb, tx=tx):
                grads = jax.grad(loss)(p, xb, yb)
                updates, s = tx.update(grads, s, p)
                return optax.apply_updates(p, updates), s

        t0 = time.perf_counter()
        params, opt_state = step(params, opt_state, x[batches[0]], y[batches[0]])
        jax.block_until_ready(params)
        compile_s += time.perf_counter() - t0
        for t in range(1, steps):
            params, opt_state = step(params, opt_state, x[batches[t]], y[batches[t]])
            if (t + 1) % eval_every == 0:
                best = min(best, float(val_loss(params)))
        jax.block_until_ready(params)
    wall = time.perf_counter() - start
    return {
        "compile_s": compile_s,
        "run_s": wall - compile_s,
        "wall_s": wall,
        "member_steps": float(len(lrs) * (steps - 1)),  # the first steps are in compile_s
    }


def handwritten(
    lrs: np.ndarray,
    steps: int,
    devices: int | None,
    workload: str = "mlp",
    options: dict[str, str] | None = None,
) -> tuple[dict[str, float], Callable[[], float]]:
    """optax ``inject_hyperparams`` + ``vmap`` + ``lax.scan`` over ``workload``, one call for all
    steps, one batch per step shared by the members, its member axis sharded over ``devices``
    exactly as jdl shards its population (`jdl.search.member_mesh`; None: every device),
    compiled with XLA's defaults or the XLA ``options`` given."""
    w = setup(workload)
    apply_fn, init_fn, train = w.apply_fn, w.init_fn, w.train
    n = train.x.shape[0]
    per_epoch = n // BATCH
    mesh = member_mesh(devices)
    split = NamedSharding(mesh, PartitionSpec("members"))
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)

    def member_step(params, opt_state, lr, xb, yb):
        opt_state.hyperparams["learning_rate"] = lr
        grads = jax.grad(lambda p: softmax_cross_entropy(apply_fn(p, xb), yb))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def train_all(lrs, key):
        one = init_fn(key)
        params = jax.tree.map(lambda a: jnp.broadcast_to(a, (len(lrs), *a.shape)), one)
        params = jax.lax.with_sharding_constraint(params, split)
        carry = (params, jax.vmap(tx.init)(params))

        def body(carry, t):
            perm = jax.random.permutation(jax.random.fold_in(key, t // per_epoch), n)
            idx = jax.lax.dynamic_slice_in_dim(perm, (t % per_epoch) * BATCH, BATCH)
            xb, yb = train.x[idx], train.y[idx]
            carry = jax.vmap(member_step, in_axes=(0, 0, 0, None, None))(*carry, lrs, xb, yb)
            return carry, None

        return jax.lax.scan(body, carry, jnp.arange(steps))[0]

    start = time.perf_counter()
    lrs_j = jax.device_put(np.asarray(lrs, np.float32), split)
    key = jax.random.key(0)
    compiled = jax.jit(train_all).lower(lrs_j, key).compile(compiler_options=options)
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(lrs_j, key))
    wall = time.perf_counter() - start

    def rerun() -> float:
        start = time.perf_counter()
        jax.block_until_ready(compiled(jax.device_put(np.asarray(lrs, np.float32), split), key))
        return time.perf_counter() - start

    figures = {
        "compile_s": compile_s,
        "run_s": wall - compile_s,
        "wall_s": wall,
        "member_steps": float(len(lrs) * steps),
        "devices": float(mesh.devices.size),
    }
    return figures, rerun


TORCH_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np, torch
    from torch.func import functional_call, grad, stack_module_state, vmap
    d = np.load(sys.argv[1]); steps = int(sys.argv[2]); B = int(sys.argv[3])
    x, y = torch.from_numpy(d["x"]), torch.from_numpy(d["y"]).long()
    lrs = torch.from_numpy(d["lrs"]).float()
    sizes = [int(s) for s in d["features"]]
    torch.manual_seed(0)
    def make():
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
        return torch.nn.Sequential(*layers)
    start = time.perf_counter()
    models = [make() for _ in lrs]
    params, buffers = stack_module_state(models)
    base = make().to("meta")
    def loss(p, b, xb, yb):
        return torch.nn.functional.cross_entropy(functional_call(base, (p, b), (xb,)), yb)
    grads_fn = vmap(grad(loss), in_dims=(0, 0, None, None))
    m = {k: torch.zeros_like(v) for k, v in params.items()}
    v = {k: torch.zeros_like(t) for k, t in params.items()}
    n = len(x); per_epoch = n // B; g = torch.Generator().manual_seed(0)
    perm = None
    for t in range(steps):
        if t % per_epoch == 0:
            perm = torch.randperm(n, generator=g)
        idx = perm[(t % per_epoch) * B:(t % per_epoch + 1) * B]
        gr = grads_fn(params, buffers, x[idx], y[idx])
        c1, c2 = 1 - 0.9 ** (t + 1), 1 - 0.999 ** (t + 1)
        with torch.no_grad():
            for k, p in params.items():
                m[k].mul_(0.9).add_(gr[k], alpha=0.1)
                v[k].mul_(0.999).addcmul_(gr[k], gr[k], value=0.001)
                lr = lrs.view(-1, *([1] * (p.dim() - 1)))
                p.sub_(lr / c1 * m[k] / ((v[k] / c2).sqrt() + 1e-8))
    wall = time.perf_counter() - start
    print(json.dumps({"compile_s": 0.0, "run_s": wall, "wall_s": wall,
                      "member_steps": float(len(lrs) * steps), "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))
    """
)


def torch_func(python: str | None, lrs: np.ndarray, steps: int) -> dict[str, Any] | None:
    """PyTorch ``torch.func`` (``stack_module_state`` + ``functional_call`` + ``vmap``) with an
    Adam written per parameter, a plain eager loop (not ``torch.compile``), over all ``steps``
    in the interpreter ``python``, on the MLP workload; None when it has no torch."""
    if python is None:
        return None
    if subprocess.run([python, "-c", "import torch"], capture_output=True).returncode != 0:
        return None
    train = setup().train
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.npz"
        np.savez(data, x=np.asarray(train.x), y=np.asarray(train.y), lrs=lrs, features=FEATURES)
        out = subprocess.run(
            [python, "-c", TORCH_SCRIPT, str(data), str(steps), str(BATCH)],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])
