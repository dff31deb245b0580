r"""What the lr_search and scaling benchmarks share: the model, the data, the FLOP count of a
member-step (checked against XLA's cost analysis) and the machine's measured matmul peak.

A member-step of the MLP :math:`d_0 - d_1 - \dots - d_L` on a batch of B examples computes

.. math::
    F = 2B \sum_{l=1}^{L} d_{l-1} d_l \;(\text{forward}) + 2B \sum_{l=1}^{L} d_{l-1} d_l
        \;(\text{weight gradients}) + 2B \sum_{l=2}^{L} d_{l-1} d_l \;(\text{input gradients})

matrix-product FLOPs: the first layer's input gradient is not computed (nothing needs it), so
F is :math:`6B\sum d_{l-1} d_l - 2B d_0 d_1`, not the textbook :math:`6B\sum d_{l-1} d_l`
(11.8% more for 64-128-128-10). Biases, activations, the loss and the optimizer's element-wise
work are not counted; XLA's count of one compiled member-step (`xla_flops_per_member_step`)
includes them and lands a little above F.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jdl.data import Dataset, digits
from jdl.losses import softmax_cross_entropy
from jdl.models import MLP, functional

FEATURES = (64, 128, 128, 10)
BATCH = 128


def flops_per_member_step(features: tuple[int, ...] = FEATURES, batch: int = BATCH) -> float:
    """F = 6 B sum_l d_{l-1} d_l - 2 B d_0 d_1: the matrix products one step computes."""
    products = sum(a * b for a, b in itertools.pairwise(features))
    return 2.0 * batch * (3 * products - features[0] * features[1])


def xla_flops_per_member_step(apply_fn: Any, init_fn: Any) -> float:
    """XLA's cost analysis of one member's compiled step (gradient + Adam update)."""
    params = init_fn(jax.random.key(0))
    tx = optax.adam(1e-3)
    x = jnp.zeros((BATCH, FEATURES[0]), jnp.float32)
    y = jnp.zeros((BATCH,), jnp.int32)

    def step(params: Any, opt_state: Any) -> Any:
        grads = jax.grad(lambda p: softmax_cross_entropy(apply_fn(p, x), y))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    compiled = jax.jit(step).lower(params, tx.init(params)).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost["flops"])


def matmul_peak(n: int = 1024, repeats: int = 20) -> float:
    """Measured fp32 matrix-product rate (FLOP/s) of the whole machine: every device runs its
    own chain of jitted n x n products at once (one device per core on a CPU host), best of
    3, ended by ``block_until_ready``."""
    devices = jax.devices()
    mesh = jax.sharding.Mesh(np.asarray(devices), ("d",))
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    x = jax.device_put(
        jnp.broadcast_to(a, (len(devices), n, n)), NamedSharding(mesh, PartitionSpec("d"))
    )

    @jax.jit
    def chain(x: jax.Array) -> jax.Array:
        def body(y: jax.Array, _: None) -> tuple[jax.Array, None]:
            return jnp.einsum("dij,jk->dik", y, a) * (1.0 / n), None

        return jax.lax.scan(body, x, None, length=repeats)[0]

    chain(x).block_until_ready()
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        chain(x).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 * repeats * len(devices) / best


def setup(features: tuple[int, ...] = FEATURES) -> tuple[Any, Any, Dataset, Dataset]:
    """apply_fn, init_fn and the digits train/val sets."""
    splits = digits()
    apply_fn, _ = functional(MLP(features, rngs=nnx.Rngs(0)))

    def init_fn(key: jax.Array) -> Any:
        return functional(MLP(features, rngs=nnx.Rngs(key)))[1]

    init_fn(jax.random.key(0))  # the eager initialisers' first compiles, charged to no variant
    return apply_fn, init_fn, splits.train, splits.val
