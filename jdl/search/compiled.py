"""A search's compiled programs: compiled ahead of time, once per argument signature.

A program is ``jit(fn)`` lowered and compiled for the shapes, dtypes and shardings of its
arguments; calling it again with arguments of the same signature reuses it, whatever their
values, so any grid of the same shape trains without recompiling. Compilation can start in a
background thread (XLA releases the GIL) while the host prepares the arguments; the time spent
compiling, or waiting for a background compile, is recorded apart from the run time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding

__all__ = ["Programs", "compiler_options", "signature"]


def signature(args: Any) -> tuple:
    """What a compiled program depends on: tree structure, shapes, dtypes and shardings (of
    arrays or of their ``jax.ShapeDtypeStruct`` descriptions), shardings up to equivalence."""
    leaves, treedef = jax.tree.flatten(args)
    return treedef, tuple(
        (tuple(leaf.shape), str(leaf.dtype), _layout(getattr(leaf, "sharding", None)))
        if isinstance(leaf, jax.Array | jax.ShapeDtypeStruct)
        else (np.shape(leaf), str(np.asarray(leaf).dtype), None)
        for leaf in leaves
    )


def _layout(sharding: Any) -> Any:
    """A canonical form of a sharding: on one device every layout is the same, and trailing
    unsplit dimensions do not count."""
    if not isinstance(sharding, NamedSharding):
        return sharding
    if sharding.mesh.size == 1:
        return ("one device", tuple(sharding.mesh.devices.flat))
    spec = list(sharding.spec)
    while spec and spec[-1] is None:
        spec.pop()
    return (sharding.mesh, tuple(spec))


XLA_DEFAULTS_ENV = "JDL_XLA_DEFAULTS"
"""The environment variable: ``1`` compiles a population's programs with XLA's defaults."""


def compiler_options(devices: Sequence[jax.Device]) -> dict[str, str]:
    """The XLA options a population's programs compile with on ``devices``.

    A population's matrix products are batched over its members. On a CPU device that has
    several cores to itself (the program runs on fewer of this process's CPU devices than the
    host has cores, as with JAX's default of one CPU device), XLA's YNNPACK library runs such
    a product on one thread, where Eigen's runs it on every core: there the products go to
    Eigen (``xla_cpu_experimental_ynn_fusion_type`` empty). On a 2-core CPU with one device, a
    search of 32 Adam members ran 1.28x faster that way for an MLP and 1.14x for a CNN
    (`benchmarks.lr_search`). With one core per device (`jdl.search.use_cpu_cores`) YNNPACK
    is as fast or faster (the CNN: Eigen 0.93x), so XLA's defaults stay, as they do on
    accelerators. The choice changes only the rounding of the products: results equal those
    of ``jax.jit`` to float tolerance, not bit for bit; ``JDL_XLA_DEFAULTS=1`` keeps XLA's
    defaults everywhere (every layout of devices then rounds alike). Only this process's
    devices are counted: processes sharing a host each see all of its cores.

    Raises:
      ValueError: ``JDL_XLA_DEFAULTS`` set to something other than 1 or 0.
    """
    setting = os.environ.get(XLA_DEFAULTS_ENV, "").strip()
    if setting not in ("", "0", "1"):
        raise ValueError(f"${XLA_DEFAULTS_ENV} must be 1 or 0 (or unset), got {setting!r}")
    if setting == "1":
        return {}
    local = [d for d in devices if d.process_index == jax.process_index()]
    if not local or any(d.platform != "cpu" for d in local) or (os.cpu_count() or 1) <= len(local):
        return {}
    return {"xla_cpu_experimental_ynn_fusion_type": ""}


class Programs:
    """Programs by name and argument signature, compiled ahead of time with their outputs
    sharded by ``shardings(outputs)``.

    Attributes:
      compilations: the number of programs compiled (or being compiled).
      compile_seconds: the time spent compiling, or waiting for a background compile.
    """

    def __init__(self, shardings: Callable[[Any], Any], devices: Sequence[jax.Device]):
        self._shardings = shardings
        self._options = compiler_options(devices)
        self._compiled: dict[tuple, Any] = {}
        self._pool: ThreadPoolExecutor | None = None
        self.compilations = 0
        self.compile_seconds = 0.0

    def __call__(self, name: str, fn: Callable, *args: Any, donate: tuple[int, ...] = ()) -> Any:
        """Runs ``jit(fn)(*args)`` (arguments ``donate`` donated), compiling it on the first
        call with this signature."""
        key = (name, signature(args))
        compiled = self._compiled.get(key)
        if compiled is None:
            start = time.perf_counter()
            self._compiled[key] = compiled = self._compile(fn, args, donate)
            self.compile_seconds += time.perf_counter() - start
            self.compilations += 1
        if isinstance(compiled, Future):
            start = time.perf_counter()
            self._compiled[key] = compiled = compiled.result()
            self.compile_seconds += time.perf_counter() - start  # the time waited for it
        return compiled(*args)

    def compiled(self, name: str, fn: Callable, *args: Any, donate: tuple[int, ...]) -> Any:
        """The compiled ``jit(fn)`` for the arguments ``args`` (arrays or
        ``jax.ShapeDtypeStruct``), compiled now unless it already is; the call with this
        signature then reuses it."""
        key = (name, signature(args))
        compiled = self._compiled.get(key)
        start = time.perf_counter()
        if compiled is None:
            self.compilations += 1
            compiled = self._compile(fn, args, donate)
        elif isinstance(compiled, Future):
            compiled = compiled.result()
        self.compile_seconds += time.perf_counter() - start
        self._compiled[key] = compiled
        return compiled

    def compile_ahead(self, name: str, fn: Callable, *args: Any, donate: tuple[int, ...]) -> None:
        """Starts compiling ``jit(fn)`` for the argument descriptions ``args`` (arrays or
        ``jax.ShapeDtypeStruct``) in a background thread; the call with this signature waits
        for it."""
        key = (name, signature(args))
        if key in self._compiled:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1)
        self.compilations += 1
        self._compiled[key] = self._pool.submit(self._compile, fn, args, donate)

    def _compile(self, fn: Callable, args: Any, donate: tuple[int, ...]) -> Any:
        def placed(*a: Any) -> Any:  # outputs sharded like the inputs (one trace)
            out = fn(*a)
            return jax.lax.with_sharding_constraint(out, self._shardings(out))

        lowered = jax.jit(placed, donate_argnums=donate).lower(*args)
        return lowered.compile(compiler_options=self._options)
