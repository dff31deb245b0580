"""Learning-rate search throughput: jdl.search against the loops users write by hand.

    python -m benchmarks.lr_search [--members 32] [--steps 500] [--eval-every 100]
        [--torch-python PATH] [--torch-steps 100] [--repeats 3] [--out FILE]

N Adam members (learning rates on a log grid) of an MLP 64-128-128-10 on digits, batch 128:

1. jdl: ``jdl.search.Search`` (one ``jit(vmap(...))`` over the members, evaluation and early
   stopping every ``--eval-every`` steps), the members sharded over the devices, which on a
   CPU host are its cores (`jdl.search.use_cpu_cores`); 1b: the same on one device;
2. the N runs one after another as most users write them: ``optax.adam(lr)`` built per run, a
   jitted step called from Python on host-drawn batches (every learning rate recompiles), the
   validation loss every ``--eval-every`` steps;
3. the same, one compiled step reused (the learning rate is an argument);
4. a hand-written optax ``inject_hyperparams`` + ``vmap`` + ``lax.scan`` program, one call for
   all steps, one batch per step shared by the members;
5. PyTorch ``torch.func`` (``stack_module_state`` + ``functional_call`` + ``vmap``) with a
   vectorised Adam, in the interpreter ``--torch-python`` (skipped when torch is absent),
   timed over ``--torch-steps`` steps (its wall time is scaled to the full run).

For each: compile time, run time (variants 1, 1b and 4: best of ``--repeats`` interleaved runs),
member-steps per second; the ratios jdl / others (wall time including compilation, and run
throughput); and the achieved FLOP rate against the machine's
measured fp32 matrix-product peak. A member-step costs 6 B sum_l(d_{l-1} d_l) FLOPs (forward
2, backward 4; biases and element-wise work not counted).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
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
from flax import nnx

import jdl.optim
from jdl.data import Dataset, digits
from jdl.losses import accuracy, softmax_cross_entropy
from jdl.models import MLP, functional
from jdl.search import Search, log_grid, population, use_cpu_cores
from jdl.train import early_stopping

FEATURES = (64, 128, 128, 10)
BATCH = 128


def flops_per_member_step() -> float:
    """6 B sum_l d_{l-1} d_l: forward 2 B d_in d_out per layer, backward twice that."""
    return 6.0 * BATCH * sum(a * b for a, b in itertools.pairwise(FEATURES))


def matmul_peak(n: int = 1024, repeats: int = 20) -> float:
    """Measured fp32 matrix-product rate (FLOP/s) of jitted n x n products, best of 3."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)

    @jax.jit
    def chain(x: jax.Array) -> jax.Array:
        def body(y: jax.Array, _: None) -> tuple[jax.Array, None]:
            return (y @ a) * (1.0 / n), None

        return jax.lax.scan(body, x, None, length=repeats)[0]

    chain(a).block_until_ready()
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        chain(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 * repeats / best


def setup() -> tuple[Any, Any, Dataset, Dataset]:
    """apply_fn, init_fn and the digits train/val sets."""
    splits = digits()
    apply_fn, _ = functional(MLP(FEATURES, rngs=nnx.Rngs(0)))

    def init_fn(key: jax.Array) -> Any:
        return functional(MLP(FEATURES, rngs=nnx.Rngs(key)))[1]

    init_fn(jax.random.key(0))  # the eager initialisers' first compiles, charged to no variant
    return apply_fn, init_fn, splits.train, splits.val


def run_jdl(
    lrs: np.ndarray, steps: int, eval_every: int, devices: int | None
) -> tuple[dict[str, float], Callable[[], float]]:
    """Variant 1: the whole population through jdl.search, sharded over ``devices``.

    Returns the figures and a function that times one more (compiled) run."""
    apply_fn, init_fn, train, val = setup()

    def loss_fn(params: Any, batch: Dataset, key: jax.Array) -> tuple[jax.Array, dict]:
        return softmax_cross_entropy(apply_fn(params, batch.x), batch.y), {}

    def eval_fn(params: Any, data: Dataset) -> dict[str, jax.Array]:
        logits = apply_fn(params, data.x)
        return {"loss": softmax_cross_entropy(logits, data.y), "accuracy": accuracy(logits, data.y)}

    search = Search(
        init_fn,
        lambda hp: jdl.optim.adam(hp["learning_rate"]),
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        batch_size=BATCH,
        eval_every=eval_every,
        early_stopping=early_stopping(10 * steps),  # no member stops: the same work as others
        devices=devices,
    )
    pop = population({"learning_rate": lrs})
    start = time.perf_counter()
    first = search.run(pop, train, val, steps=steps, progress=False)
    wall = time.perf_counter() - start
    assert (first.steps == steps).all()

    def rerun() -> float:
        return search.run(pop, train, val, steps=steps, progress=False).timing["run_s"]

    figures = {
        "compile_s": first.timing["compile_s"],
        "run_s": rerun(),
        "wall_s": wall,
        "member_steps": float(len(lrs) * steps),
        "devices": float(search.num_devices),
    }
    return figures, rerun


def _host_batches(n: int, steps: int, seed: int) -> np.ndarray:
    """Batch indices as a Python loop draws them: a NumPy permutation per epoch."""
    rng = np.random.default_rng(seed)
    per_epoch = n // BATCH
    idx = [rng.permutation(n)[: per_epoch * BATCH].reshape(per_epoch, BATCH)]
    while sum(len(i) for i in idx) < steps:
        idx.append(rng.permutation(n)[: per_epoch * BATCH].reshape(per_epoch, BATCH))
    return np.concatenate(idx)[:steps]


def run_sequential(
    lrs: np.ndarray, steps: int, eval_every: int, *, reuse: bool
) -> dict[str, float]:
    """Variants 2 and 3: one run after another, a jitted step called from Python, the
    validation loss evaluated every ``eval_every`` steps (as jdl does) by one jitted function."""
    apply_fn, init_fn, train, val = setup()
    x, y = np.asarray(train.x), np.asarray(train.y)
    batches = _host_batches(len(x), steps, 0)

    def loss(params: Any, xb: jax.Array, yb: jax.Array) -> jax.Array:
        return softmax_cross_entropy(apply_fn(params, xb), yb)

    @jax.jit
    def shared_step(params: Any, opt_state: Any, lr: jax.Array, xb: jax.Array, yb: jax.Array):
        tx = optax.adam(lr)
        grads = jax.grad(loss)(params, xb, yb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    @jax.jit
    def val_loss(params: Any) -> jax.Array:
        return loss(params, val.x, val.y)

    compile_s = 0.0
    start = time.perf_counter()
    for lr in lrs:
        best = math.inf
        params = init_fn(jax.random.key(0))
        if reuse:
            tx = optax.adam(float(lr))
            opt_state = tx.init(params)

            lr_arg = jnp.float32(lr)

            def step(p, s, xb, yb, lr=lr_arg):
                return shared_step(p, s, lr, xb, yb)
        else:
            tx = optax.adam(float(lr))
            opt_state = tx.init(params)

            @jax.jit
            def step(p, s, xb, yb, tx=tx):
                grads = jax.grad(loss)(p, xb, yb)
                updates, s = tx.update(grads, s, p)
                return optax.apply_updates(p, updates), s

        t0 = time.perf_counter()
        params, opt_state = step(params, opt_state, x[batches[0]], y[batches[0]])
        jax.block_until_ready(params)
        compile_s += time.perf_counter() - t0  # the first call: compile (when it must) + a step
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
        "member_steps": float(len(lrs) * (steps - 1)),  # the first steps are counted in compile
    }


def run_handwritten(lrs: np.ndarray, steps: int) -> tuple[dict[str, float], Callable[[], float]]:
    """Variant 4: inject_hyperparams + vmap + lax.scan, one call, batches shared by members.

    Returns the figures and a function that times one more (compiled) run."""
    apply_fn, init_fn, train, _ = setup()
    n = train.x.shape[0]
    per_epoch = n // BATCH
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)

    def member_step(params, opt_state, lr, xb, yb):
        opt_state.hyperparams["learning_rate"] = lr
        grads = jax.grad(lambda p: softmax_cross_entropy(apply_fn(p, xb), yb))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    @jax.jit
    def train_all(params, opt_state, lrs, key):
        def body(carry, t):
            perm = jax.random.permutation(jax.random.fold_in(key, t // per_epoch), n)
            idx = jax.lax.dynamic_slice_in_dim(perm, (t % per_epoch) * BATCH, BATCH)
            xb, yb = train.x[idx], train.y[idx]
            carry = jax.vmap(member_step, in_axes=(0, 0, 0, None, None))(*carry, lrs, xb, yb)
            return carry, None

        return jax.lax.scan(body, (params, opt_state), jnp.arange(steps))[0]

    one = init_fn(jax.random.key(0))
    params = jax.tree.map(lambda a: jnp.broadcast_to(a, (len(lrs), *a.shape)), one)
    opt_state = jax.vmap(tx.init)(params)
    lrs_j, key = jnp.asarray(lrs, jnp.float32), jax.random.key(1)
    start = time.perf_counter()
    compiled = train_all.lower(params, opt_state, lrs_j, key).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(compiled(params, opt_state, lrs_j, key))
    first = time.perf_counter() - start

    def rerun() -> float:
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, opt_state, lrs_j, key))
        return time.perf_counter() - start

    figures = {
        "compile_s": compile_s,
        "run_s": rerun(),
        "wall_s": compile_s + first,
        "member_steps": float(len(lrs) * steps),
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
    models = [make() for _ in lrs]
    params, buffers = stack_module_state(models)
    base = make().to("meta")
    def loss(p, b, xb, yb):
        return torch.nn.functional.cross_entropy(functional_call(base, (p, b), (xb,)), yb)
    grads_fn = vmap(grad(loss), in_dims=(0, 0, None, None))
    m = {k: torch.zeros_like(v) for k, v in params.items()}
    v = {k: torch.zeros_like(t) for k, t in params.items()}
    n = len(x); per_epoch = n // B; g = torch.Generator().manual_seed(0)
    def run(steps):
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
    start = time.perf_counter(); run(5); warm = time.perf_counter() - start
    start = time.perf_counter(); run(steps); run_s = time.perf_counter() - start
    print(json.dumps({"compile_s": 0.0, "run_s": run_s, "wall_s": run_s + warm,
                      "member_steps": float(len(lrs) * steps), "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))
    """
)


def run_torch(
    python: str | None, lrs: np.ndarray, steps: int, timed_steps: int
) -> dict[str, Any] | None:
    """Variant 5 in a torch interpreter (a subprocess), timed over ``timed_steps`` steps, its
    wall time scaled to ``steps``; None when torch is not installed."""
    if python is None:
        return None
    check = subprocess.run([python, "-c", "import torch"], capture_output=True)
    if check.returncode != 0:
        return None
    _, _, train, _ = setup()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.npz"
        np.savez(
            data,
            x=np.asarray(train.x),
            y=np.asarray(train.y),
            lrs=lrs,
            features=np.asarray(FEATURES),
        )
        out = subprocess.run(
            [python, "-c", TORCH_SCRIPT, str(data), str(timed_steps), str(BATCH)],
            capture_output=True,
            text=True,
            check=True,
        )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_s"] += result["run_s"] * (steps / timed_steps - 1.0)
    return result


def _default_torch_python() -> str | None:
    """``$JDL_TORCH_PYTHON``, else this interpreter if it has torch, else None (skip)."""
    if os.environ.get("JDL_TORCH_PYTHON"):
        return os.environ["JDL_TORCH_PYTHON"]
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    return sys.executable


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs every variant in this process and prints times, rates and ratios."""
    # jdl shards its population over the devices; on a CPU host, one device per core (the
    # other variants run on one device, as their authors write them).
    use_cpu_cores()
    p = argparse.ArgumentParser(prog="python -m benchmarks.lr_search", description=__doc__)
    p.add_argument("--members", type=int, default=32)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument(
        "--torch-python",
        default=_default_torch_python(),
        help="a Python interpreter with torch for variant 5 (default: $JDL_TORCH_PYTHON)",
    )
    p.add_argument(
        "--torch-steps",
        type=int,
        default=100,
        help="steps timed for variant 5 (slow on CPU); its rate is compared per member-step",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed runs of 1, 1b and 4 (best)")
    p.add_argument("--out", default=None, help="also write the figures as JSON")
    a = p.parse_args(argv)
    if min(a.members, a.steps, a.eval_every, a.torch_steps, a.repeats) < 1:
        p.error("--members, --steps, --eval-every, --torch-steps, --repeats must be positive")
    lrs = log_grid(1e-4, 1e-1, a.members)
    peak = matmul_peak()
    jdl_all, rerun_all = run_jdl(lrs, a.steps, a.eval_every, None)
    jdl_one, rerun_one = run_jdl(lrs, a.steps, a.eval_every, 1)
    hand, rerun_hand = run_handwritten(lrs, a.steps)
    results: dict[str, Any] = {
        f"1 jdl.search, {int(jdl_all['devices'])} devices": jdl_all,
        "1b jdl.search, 1 device": jdl_one,
        "2 sequential, recompiled": run_sequential(lrs, a.steps, a.eval_every, reuse=False),
        "3 sequential, one compile": run_sequential(lrs, a.steps, a.eval_every, reuse=True),
        "4 hand-written vmap+scan": hand,
    }
    # The compiled runs again, interleaved, keeping the best of each: other processes on a
    # shared machine slow down one variant or another.
    for _ in range(a.repeats - 1):
        for figures, rerun in ((jdl_all, rerun_all), (jdl_one, rerun_one), (hand, rerun_hand)):
            figures["run_s"] = min(figures["run_s"], rerun())
    torch_result = run_torch(a.torch_python, lrs, a.steps, min(a.steps, a.torch_steps))
    if torch_result is not None:
        results["5 torch.func vmap"] = torch_result
    flop = flops_per_member_step()
    jdl_r = jdl_all
    print(
        f"{a.members} Adam members, MLP {'-'.join(map(str, FEATURES))}, batch {BATCH}, "
        f"{a.steps} steps; {jax.devices()[0].platform}, {os.cpu_count()} cores"
    )
    print(f"measured fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s\n")
    header = (
        f"{'variant':28s} {'compile s':>9s} {'run s':>7s} {'wall s':>7s} "
        f"{'member-steps/s':>14s} {'GFLOP/s':>8s} {'% peak':>6s} "
        f"{'jdl wall x':>10s} {'jdl thrpt x':>11s}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        r["member_steps_per_s"] = r["member_steps"] / r["run_s"]
        r["gflop_per_s"] = r["member_steps_per_s"] * flop / 1e9
        r["fraction_of_peak"] = r["member_steps_per_s"] * flop / peak
        r["jdl_wall_speedup"] = r["wall_s"] / jdl_r["wall_s"]
        r["jdl_throughput_ratio"] = jdl_r["member_steps"] / jdl_r["run_s"] / r["member_steps_per_s"]
        print(
            f"{name:28s} {r['compile_s']:9.2f} {r['run_s']:7.2f} {r['wall_s']:7.2f} "
            f"{r['member_steps_per_s']:14.0f} {r['gflop_per_s']:8.2f} "
            f"{100 * r['fraction_of_peak']:6.1f} {r['jdl_wall_speedup']:10.2f} "
            f"{r['jdl_throughput_ratio']:11.2f}"
        )
    if torch_result is None:
        print("5 torch.func vmap: skipped (no torch interpreter; set --torch-python)")
    summary = {
        "jdl_vs_sequential_recompiled_wall": results["2 sequential, recompiled"][
            "jdl_wall_speedup"
        ],
        "jdl_vs_sequential_one_compile_wall": results["3 sequential, one compile"][
            "jdl_wall_speedup"
        ],
        "jdl_vs_handwritten_throughput": results["4 hand-written vmap+scan"][
            "jdl_throughput_ratio"
        ],
        "jdl_1_device_vs_handwritten_throughput": jdl_one["run_s"] ** -1 / hand["run_s"] ** -1,
    }
    print("\n" + "\n".join(f"{k}: {v:.2f}x" for k, v in summary.items()))
    out = {
        "config": vars(a),
        "peak_flop_per_s": peak,
        "flop_per_member_step": flop,
        "variants": results,
        "summary": summary,
    }
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
