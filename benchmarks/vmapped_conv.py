"""What XLA makes of convolutions vmapped over the members' kernels, on one CPU device.

    python -m benchmarks.vmapped_conv [--members 32] [--repeats 20]

One Adam step (gradient and update) of the MNIST-1D CNN of `benchmarks.machine` on a batch of
128 signals, for N members with their own parameters and learning rates sharing the batch (as
in a search): ``jit(vmap(step))``, and one member's ``jit(step)``. The same network in two
implementations:

- ``per-tap``: `jdl.models.Conv`, one strided slice of the input times the kernel's tap per
  tap; under ``vmap`` each product is a ``dot`` with the members as a batch dimension;
- ``lax.conv``: ``lax.conv_general_dilated`` on the same parameters (checked to give the same
  logits).

For each it prints the optimised HLO's convolutions (those with ``feature_group_count`` > 1
are grouped convolutions) and dots, and the best of ``--repeats`` timed calls of the vmapped
step, of one member's step, and N times the latter: the members' steps one after another
without any other overhead.

JAX's batching rule for ``lax.conv_general_dilated`` folds the members into the features: a
layer whose input is the members' own becomes one grouped convolution (``feature_group_count``
= N), one whose input they share (the first) one plain convolution with the N kernels side by
side; there is no loop over the members.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.machine import BATCH, setup
from jdl.losses import softmax_cross_entropy


def lax_apply(params: Any, x: jax.Array) -> jax.Array:
    """The CNN's logits with ``lax.conv_general_dilated``: each convolution stride 2, one zero
    of padding on both sides, GELU, then the linear head."""
    h = x.reshape(x.shape[0], -1, 1)
    for i in range(len(params["convs"])):
        conv = params["convs"][i]
        h = jax.lax.conv_general_dilated(
            h, conv["kernel"], (2,), [(1, 1)], dimension_numbers=("NWC", "WIO", "NWC")
        )
        h = jax.nn.gelu(h + conv["bias"])
    head = params["head"][0]
    return h.reshape(h.shape[0], -1) @ head["kernel"] + head["bias"]


def hlo_ops(compiled: jax.stages.Compiled) -> str:
    """The convolutions and dots of a compiled program's optimised HLO, in words."""
    text = compiled.as_text()
    convs = re.findall(r"= f32\[([\d,]+)\]\S* convolution\(.*", text)
    groups = re.findall(r"= \S+ convolution\(.*feature_group_count=(\d+)", text)
    dots = len(re.findall(r"= \S+ dot\(", text))
    if not convs:
        return f"{dots} dots, no convolution"
    features = "/".join(sorted({c.split(",")[-1] for c in convs}))
    grouped = f", {len(groups)} grouped by {'/'.join(sorted(set(groups)))}" if groups else ""
    return f"{dots} dots, {len(convs)} convolutions of {features} output features{grouped}"


def best_time(fn: Callable[..., Any], args: tuple, repeats: int) -> float:
    """The best of ``repeats`` calls, each ended by ``block_until_ready``."""
    jax.block_until_ready(fn(*args))
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return float(best)


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Compiles and times both implementations; prints and returns their figures."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.vmapped_conv", description=__doc__)
    p.add_argument("--members", type=int, default=32, help="members N")
    p.add_argument("--repeats", type=int, default=20, help="timed calls of every step (best)")
    a = p.parse_args(argv)
    if min(a.members, a.repeats) < 1:
        p.error("--members and --repeats must be >= 1")
    w = setup("cnn")
    x, y = w.train.x[:BATCH], w.train.y[:BATCH]
    params = w.init_fn(jax.random.key(0))
    np.testing.assert_allclose(lax_apply(params, x), w.apply_fn(params, x), rtol=1e-4, atol=1e-5)
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    members = jax.tree.map(lambda v: jnp.broadcast_to(v, (a.members, *v.shape)), params)
    lrs = jnp.logspace(-4, -1, a.members)
    results: dict[str, dict[str, Any]] = {}
    print(
        f"one Adam step of the {w.model}, batch {BATCH}, {a.members} members, "
        f"{jax.devices()[0].platform}, 1 device; best of {a.repeats}"
    )
    print(f"{'implementation':14s} {'vmapped ms':>10s} {'one ms':>7s} {'N x one ms':>10s}  HLO")
    for name, apply_fn in (("per-tap", w.apply_fn), ("lax.conv", lax_apply)):

        def step(params: Any, opt_state: Any, lr: jax.Array, apply_fn: Callable = apply_fn):
            opt_state.hyperparams["learning_rate"] = lr
            grads = jax.grad(lambda q: softmax_cross_entropy(apply_fn(q, x), y))(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        batched = (members, jax.vmap(tx.init)(members), lrs)
        vmapped = jax.jit(jax.vmap(step)).lower(*batched).compile()
        one = jax.jit(step).lower(params, tx.init(params), lrs[0]).compile()
        r = {
            "vmapped_s": best_time(vmapped, batched, a.repeats),
            "one_s": best_time(one, (params, tx.init(params), lrs[0]), a.repeats),
            "hlo": hlo_ops(vmapped),
        }
        results[name] = r
        print(
            f"{name:14s} {1e3 * r['vmapped_s']:10.2f} {1e3 * r['one_s']:7.2f} "
            f"{1e3 * a.members * r['one_s']:10.2f}  {r['hlo']}"
        )
    tap, conv = results["per-tap"], results["lax.conv"]
    print(
        f"vmapped lax.conv / per-tap: {conv['vmapped_s'] / tap['vmapped_s']:.2f}x the time; "
        f"vmapped / (N x one): per-tap {tap['vmapped_s'] / (a.members * tap['one_s']):.2f}, "
        f"lax.conv {conv['vmapped_s'] / (a.members * conv['one_s']):.2f}"
    )
    return results


if __name__ == "__main__":
    main()
