r"""How many members fit in memory: a population's footprint read from its compiled program.

A chunk compiled for P members on D devices holds, on each device,

.. math::
    M(P) = c + m \, P / D,

bytes: c for what every device holds once (the replicated data sets, the loop's scalars and
XLA's buffers that do not grow with the members), m for one member (its parameters, optimizer
and early-stopping states, best parameters, metrics, and its share of the step's activations
and gradients). XLA reports M for a compiled program (``Compiled.memory_analysis()``:
arguments + outputs - donated aliases + temporaries); two programs (P and D members) give c
and m, and the largest slice of members that fits a budget B per device is
``D * floor((B - c) / m)``.

References:
  JAX, "Ahead-of-time lowering and compilation" (``jax.stages.Compiled.memory_analysis``),
  https://docs.jax.dev/en/latest/aot.html
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import jax

__all__ = ["MemoryBudgetError", "device_budget", "program_bytes", "slice_members"]


class MemoryBudgetError(ValueError):
    """Not even one member per device fits the memory budget."""


CPU_FRACTION = 0.5
"""The share of the host's physical memory that a search on CPU devices may use."""

DEVICE_FRACTION = 0.9
"""The share of an accelerator's memory (its ``bytes_limit``) that a search may use."""


def program_bytes(compiled: jax.stages.Compiled) -> int | None:
    """The bytes a compiled program holds on one device while it runs, from XLA's memory
    analysis (arguments + outputs - aliased donations + temporaries); None when the backend
    does not report it."""
    try:
        stats = compiled.memory_analysis()
    except (NotImplementedError, RuntimeError):
        return None
    if stats is None:
        return None
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        - stats.alias_size_in_bytes
        + stats.temp_size_in_bytes
    )


def device_budget(devices: Sequence[jax.Device], budget: int | None = None) -> int:
    """The bytes one device of ``devices`` may use.

    Args:
      devices: the devices the members are split over (D of them).
      budget: the bytes the whole population may use on all of them, or None: each
        accelerator's ``DEVICE_FRACTION`` of its memory; for CPU devices, which share the
        host's memory, ``CPU_FRACTION`` of it split over the D devices.

    Returns:
      The budget of one device, ``budget / D`` when ``budget`` is given.
    """
    d = len(devices)
    if budget is not None:
        return budget // d
    limits = []
    for device in devices:
        stats = device.memory_stats() if device.platform != "cpu" else None
        if stats and stats.get("bytes_limit"):
            limits.append(int(DEVICE_FRACTION * stats["bytes_limit"]))
    if limits:
        return min(limits)
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(CPU_FRACTION * physical) // d


def slice_members(
    full: int, full_bytes: int, small_bytes: int, num_devices: int, per_device: int
) -> int:
    r"""The largest multiple of D members (at most ``full``) whose program fits ``per_device``.

    From ``M(full) = full_bytes`` and ``M(D) = small_bytes`` (one member per device):
    :math:`m = (M(P) - M(D)) / (P / D - 1)`, :math:`c = M(D) - m`, and the slice is
    :math:`D \lfloor (B - c) / m \rfloor`.

    Args:
      full: the padded population P (a multiple of D, > D).
      full_bytes, small_bytes: the per-device bytes of the programs for P and D members.
      num_devices: D.
      per_device: the budget B of one device.

    Raises:
      MemoryBudgetError: not even one member per device fits.
    """
    if small_bytes > per_device:
        raise MemoryBudgetError(
            f"one member per device needs {_mib(small_bytes)} per device, more than the budget "
            f"of {_mib(per_device)}: give a larger memory budget or use more devices"
        )
    per_member = max((full_bytes - small_bytes) / max(full // num_devices - 1, 1), 1.0)
    constant = small_bytes - per_member
    fits = math.floor((per_device - constant) / per_member)
    return num_devices * max(1, min(fits, full // num_devices))


def _mib(n: Any) -> str:
    return f"{n / 2**20:.1f} MiB"
