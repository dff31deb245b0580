r"""What the lr_search and scaling benchmarks share: the workloads (a model and its data), the
FLOP count of a member-step (checked against XLA's cost analysis) and the machine's measured
matmul peak.

Two workloads (`setup`): ``"mlp"``, the MLP 64-128-128-10 on digits, and ``"cnn"``, the CNN of
`experiments.classifiers.cnn` on MNIST-1D (three stride-2 convolutions of 32 channels, kernels
5, 3, 3 over 40 -> 19 -> 10 -> 5 positions, a linear head; `jdl.models.Conv` computes each
as one matrix product per kernel tap). Layer l computes :math:`m_l` multiply-adds per example
in its forward matrix products: :math:`d_{l-1} d_l` for a dense layer, :math:`P_l K_l C_{l-1}
C_l` for a convolution of :math:`P_l` output positions, :math:`K_l` taps and :math:`C_{l-1}
\to C_l` channels. A member-step on a batch of B examples computes

.. math::
    F = 2B \sum_{l=1}^{L} m_l \;(\text{forward}) + 2B \sum_{l=1}^{L} m_l
        \;(\text{weight gradients}) + 2B \sum_{l=2}^{L} m_l \;(\text{input gradients})

matrix-product FLOPs: the first layer's input gradient is not computed (nothing needs it), so
F is :math:`6B\sum m_l - 2B m_1`, not the textbook :math:`6B\sum m_l` (11.8% more for
64-128-128-10). Biases, activations, the loss and the optimizer's element-wise work are not
counted; XLA's count of one compiled member-step (`xla_flops_per_member_step`) includes them and
lands a little above F.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from experiments.classifiers import cnn
from experiments.estimates import step_flops
from jdl.data import Dataset, digits, mnist1d
from jdl.losses import softmax_cross_entropy
from jdl.models import MLP, ConvNet, functional

NUM_CLASSES = 10  # of both data sets
FEATURES = (64, 128, 128, NUM_CLASSES)
BATCH = 128
WORKLOADS = ("mlp", "cnn")
CHANNELS = 32  # the CNN's, per convolution


class Workload(NamedTuple):
    """What every variant of a benchmark trains: a model on its data.

    Attributes:
      name: ``"mlp"`` or ``"cnn"``.
      model: the model and the data in words, for the tables.
      apply_fn: ``apply_fn(params, x) -> logits``.
      init_fn: ``init_fn(key) -> params``.
      train: the training set.
      val: the validation set.
      products: :math:`m_l`, each layer's forward multiply-adds per example.
    """

    name: str
    model: str
    apply_fn: Any
    init_fn: Any
    train: Dataset
    val: Dataset
    products: tuple[int, ...]


def flops_per_member_step(products: tuple[int, ...], batch: int = BATCH) -> float:
    """F = 6 B sum_l m_l - 2 B m_1: the matrix products one step computes (the experiments'
    estimates count a step alike, `experiments.estimates.step_flops`)."""
    return float(batch * step_flops([2 * m for m in products]))


def xla_flops_per_member_step(workload: Workload) -> float:
    """XLA's cost analysis of one member's compiled step (gradient + Adam update)."""
    apply_fn = workload.apply_fn
    params = workload.init_fn(jax.random.key(0))
    tx = optax.adam(1e-3)
    x = jnp.zeros((BATCH, workload.train.x.shape[1]), jnp.float32)
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


def _products(model: MLP | ConvNet) -> tuple[int, ...]:
    """Each layer's forward multiply-adds per example: P_l times its kernel's size."""
    if isinstance(model, MLP):
        return tuple(layer.kernel[...].size for layer in model.layers)
    spatial, products = model.input_shape[:-1], []
    for conv in model.convs:  # no pooling
        spatial = conv.output_shape(spatial)
        products.append(math.prod(spatial) * conv.kernel[...].size)
    return (*products, *(layer.kernel[...].size for layer in model.head))


def setup(name: str = "mlp") -> Workload:
    """The workload ``name`` (one of `WORKLOADS`): the MLP on digits or the CNN on MNIST-1D."""
    if name == "mlp":
        splits, make = digits(), lambda rngs: MLP(FEATURES, rngs=rngs)
        model = f"MLP {'-'.join(map(str, FEATURES))} on digits"
    else:
        splits, make = mnist1d(), cnn("mnist1d", NUM_CLASSES, CHANNELS)
        model = f"CNN {CHANNELS}-{CHANNELS}-{CHANNELS} channels (kernels 5, 3, 3) on MNIST-1D"
    apply_fn, _ = functional(make(nnx.Rngs(0)))

    def init_fn(key: jax.Array) -> Any:
        return functional(make(nnx.Rngs(key)))[1]

    init_fn(jax.random.key(0))  # the eager initialisers' first compiles, charged to no variant
    products = _products(make(nnx.Rngs(0)))
    return Workload(name, model, apply_fn, init_fn, splits.train, splits.val, products)
