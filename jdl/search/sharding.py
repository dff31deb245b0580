"""The population axis over devices: a 1-D `Mesh`, `NamedSharding`, padding and member chunks.

A search holds P members; every member's arrays carry the member axis. With D devices the
axis is padded to a multiple of D (copies of the last member, harmless valid values), split
over the devices with ``NamedSharding(mesh, PartitionSpec(..., "members"))``, and the padding
is dropped from the results. The data sets are replicated on every device. Nothing else
changes: ``jit`` partitions the vmapped program by the shardings of its inputs, and each device
trains its own members, so the results equal the single-device ones.

Several hosts join with `initialize_distributed` (``jax.distributed.initialize``) before any
other JAX call; ``jax.devices()`` then lists every host's devices and the same program runs on
all of them.
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
    "initialize_distributed",
    "member_mesh",
    "member_sharding",
    "pad_members",
    "padded_size",
    "replicate",
    "to_host",
    "use_cpu_cores",
]

MEMBER_AXIS = "members"
"""Name of the mesh axis that the population is split over."""


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
) -> None:
    """Joins this process to a multi-host run: ``jax.distributed.initialize(...)``.

    Call it once per process, before any other JAX call. Every process then sees the devices
    of all hosts in ``jax.devices()``; a search built afterwards shards its population over all
    of them (each host runs the members on its own devices), and every process gets the whole
    result. Without arguments JAX detects the cluster (Cloud TPU, SLURM, Open MPI, Kubernetes);
    elsewhere give the three values explicitly, the same coordinator on every host::

        initialize_distributed("10.0.0.1:1234", num_processes=2, process_id=0)  # on host 0
        initialize_distributed("10.0.0.1:1234", num_processes=2, process_id=1)  # on host 1

    Args:
      coordinator_address: ``"host:port"`` of process 0, reachable from every process.
      num_processes: the number of processes N >= 1.
      process_id: this process's rank in [0, N).
      local_device_ids: the devices of this host that this process uses (default: all).

    Raises:
      ValueError: ``num_processes`` < 1 or ``process_id`` outside [0, num_processes), or only
        some of the three values given.

    References:
      JAX, "Multi-host and multi-process environments",
      https://docs.jax.dev/en/latest/multi_process.html
    """
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError(
            "give coordinator_address, num_processes and process_id together (or none of them "
            "to let JAX detect the cluster)"
        )
    if num_processes is not None:
        if isinstance(num_processes, bool) or not isinstance(num_processes, int):
            raise ValueError(f"num_processes must be an int >= 1, got {num_processes!r}")
        if num_processes < 1:
            raise ValueError(f"num_processes must be >= 1, got {num_processes}")
        if isinstance(process_id, bool) or not isinstance(process_id, int):
            raise ValueError(f"process_id must be an int, got {process_id!r}")
        if not 0 <= process_id < num_processes:
            raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
    )


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


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf, whole, on every device of the mesh (for the data sets and keys)."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def to_host(tree: Any) -> Any:
    """Every leaf as a NumPy array holding all members, on every process.

    One process: ``np.asarray``; several: ``multihost_utils.process_allgather``, since a host
    holds only its own devices' members.
    """
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    return multihost_utils.process_allgather(tree, tiled=True)
