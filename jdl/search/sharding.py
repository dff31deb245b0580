"""The population axis over devices: a 1-D `Mesh`, `NamedSharding`, padding and member chunks.

A search holds P members; every member's arrays carry the member axis. With D devices the
axis is padded to a multiple of D (copies of the last member, harmless valid values), split
over the devices with ``NamedSharding(mesh, PartitionSpec(..., "members"))``, and the padding
is dropped from the results. The data sets are replicated on every device. Nothing else
changes: ``jit`` partitions the vmapped program by the shardings of its inputs, and each device
trains its own members, so the results equal the single-device ones.

Several processes join with `jdl.search.initialize_distributed` (``jax.distributed.initialize``)
before any other JAX call; ``jax.devices()`` then lists every process's devices and the same
program runs on all of them. Each process then holds only its own devices' shards: host values
(identical on every process) are placed by `put`, each process writing its own shards, and
`to_host` gathers the shards of the others.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "MEMBER_AXIS",
    "member_mesh",
    "member_sharding",
    "pad_members",
    "padded_size",
    "put",
    "replicate",
    "to_host",
    "use_cpu_cores",
]

MEMBER_AXIS = "members"
"""Name of the mesh axis that the population is split over."""


def use_cpu_cores(num_devices: int | None = None) -> bool:
    """Exposes the host's CPU cores as XLA CPU devices, so a search shards its population over
    them: ``jax.config.update("jax_num_cpu_devices", n)``.

    XLA runs one CPU device's program mostly on one thread; with one device per core, the
    members of each device train on their own core (on a 2-core machine, up to twice the
    throughput). It must run before JAX's first computation; on a machine with accelerators it
    only changes the CPU backend, which a search does not use.

    Args:
      num_devices: n >= 1 (default: ``os.cpu_count()``).

    Returns:
      True if applied; False if JAX's backends were already running (the devices then stay as
      they are).

    Raises:
      ValueError: n < 1.
    """
    n = (os.cpu_count() or 1) if num_devices is None else num_devices
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"num_devices must be a positive int, got {num_devices!r}")
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        return False
    return True


def member_mesh(devices: int | Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over the devices with one axis, ``"members"``.

    Args:
      devices: None (every device, ``jax.devices()``), a count n (the first n devices) or a
        sequence of devices.

    Returns:
      ``Mesh(devices, ("members",))``.

    Raises:
      ValueError: a count < 1 or more than the devices available, or an empty sequence.
    """
    available = jax.devices()
    if devices is None:
        chosen = available
    elif isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"devices must be between 1 and the {len(available)} available devices, got "
                f"{devices}"
            )
        chosen = available[:devices]
    elif (
        isinstance(devices, Sequence)
        and devices
        and all(isinstance(d, jax.Device) for d in devices)
    ):
        chosen = list(devices)
    else:
        raise ValueError(f"devices must be None, a positive int or jax devices, got {devices!r}")
    return Mesh(np.asarray(chosen), (MEMBER_AXIS,))


def padded_size(num_members: int, num_devices: int) -> int:
    """The smallest multiple of ``num_devices`` that holds ``num_members``:
    ``ceil(P / D) * D``."""
    if num_members < 1 or num_devices < 1:
        raise ValueError(
            f"num_members and num_devices must be >= 1, got {num_members}, {num_devices}"
        )
    return math.ceil(num_members / num_devices) * num_devices


def pad_members(tree: Any, size: int, axis: int = 0) -> Any:
    """Pads the member axis of every leaf to ``size`` with copies of the last member (NumPy
    arrays stay NumPy arrays).

    Copies rather than zeros: a padded member is a valid configuration that trains like the one
    it copies, so it can neither fail nor slow anything down; its results are dropped.
    """

    def pad(leaf: Any) -> Any:
        n = leaf.shape[axis]
        if n > size:
            raise ValueError(f"cannot pad a member axis of {n} down to {size}")
        widths = [(0, 0)] * leaf.ndim
        widths[axis] = (0, size - n)
        pad_fn = np.pad if isinstance(leaf, np.ndarray) else jnp.pad
        return pad_fn(leaf, widths, mode="edge")

    return jax.tree.map(pad, tree)


def member_sharding(mesh: Mesh, ndim: int, axis: int = 0) -> NamedSharding:
    """``NamedSharding`` that splits dimension ``axis`` of an ``ndim``-dimensional array over
    the mesh's ``"members"`` axis and replicates the others."""
    spec = [None] * ndim
    spec[axis] = MEMBER_AXIS
    return NamedSharding(mesh, PartitionSpec(*spec))


def put(tree: Any, shardings: Any) -> Any:
    """Places every leaf with its sharding (a tree of shardings, or one for every leaf).

    With one process this is ``jax.device_put``. With several, a leaf already placed so stays
    as it is, a global array is resharded by ``device_put``, and of a host value (the same on
    every process) each process writes only its own devices' shards
    (``jax.make_array_from_callback``): no transfer between processes, and no comparison of the
    values across processes, which ``device_put`` makes (and which fails on NaN: NaN != NaN).
    `jdl.search.distributed.check_same` checks once that the processes agree.
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, shardings)
    if isinstance(shardings, jax.sharding.Sharding):
        shardings = jax.tree.map(lambda _: shardings, tree)

    def place(leaf: Any, sharding: jax.sharding.Sharding) -> jax.Array:
        if isinstance(leaf, jax.Array):
            if leaf.sharding.is_equivalent_to(sharding, leaf.ndim):
                return leaf
            if not leaf.is_fully_addressable:
                return jax.device_put(leaf, sharding)
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(place, tree, shardings)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf, whole, on every device of the mesh (for the data sets and keys)."""
    return put(tree, NamedSharding(mesh, PartitionSpec()))


def to_host(tree: Any) -> Any:
    """Every leaf as a NumPy array holding all members, on every process.

    A leaf held whole by this process (one process, or a replicated array) is read from its
    own devices; the leaves split over several processes are gathered in one compiled
    program (an identity whose outputs are replicated: one all-gather per leaf), so every
    process gets the whole population. Every process must call it, in the same order.
    """
    leaves, treedef = jax.tree.flatten(tree)
    split = [
        isinstance(leaf, jax.Array)
        and not leaf.is_fully_addressable
        and not leaf.is_fully_replicated
        for leaf in leaves
    ]
    named = [i for i, s in enumerate(split) if s and isinstance(leaves[i].sharding, NamedSharding)]
    if named:
        shardings = tuple(NamedSharding(leaves[i].sharding.mesh, PartitionSpec()) for i in named)
        gathered = jax.jit(_identity, out_shardings=shardings)(tuple(leaves[i] for i in named))
        for i, leaf in zip(named, gathered, strict=True):
            leaves[i] = leaf
    host = [
        multihost_utils.process_allgather(leaf, tiled=True)
        if s and i not in named
        else np.asarray(leaf.addressable_data(0))
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable
        else np.asarray(leaf)
        for i, (leaf, s) in enumerate(zip(leaves, split, strict=True))
    ]
    return jax.tree.unflatten(treedef, host)


def _identity(x: Any) -> Any:
    return x
