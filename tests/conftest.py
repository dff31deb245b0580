"""Test-wide settings: strict rank promotion, as equinox runs its tests."""

import os
import signal

# The experiments and benchmarks turn on JAX's persistent compilation cache in the user's cache
# folder; tests (and the subprocesses they start, which inherit this) never write there.
os.environ["JDL_COMPILE_CACHE"] = "0"
# XLA's CPU backend at LLVM optimization level 0, without LLVM's expensive passes, with one
# code-generation split and its older loop emitters instead of the MLIR fusion emitters, for the
# test process and its subprocesses: the tests' programs are tiny and mostly compile, and so
# they compile in about a third of the CPU time (the suite in under 5 minutes on 2 cores).
# Every reference a test compares with compiles alike, and the suite passes with XLA's default
# flags too.
os.environ["XLA_FLAGS"] = " ".join(
    [
        os.environ.get("XLA_FLAGS", ""),
        "--xla_backend_optimization_level=0",
        "--xla_llvm_disable_expensive_passes=true",
        "--xla_cpu_parallel_codegen_split_count=1",
        "--xla_cpu_use_fusion_emitters=false",
    ]
).strip()

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
# One CPU device per test process, whichever test runs first: an experiment's main called in
# process (`use_cpu_cores`) would otherwise give the rest of its worker one device per core.
# Several devices are tested in subprocesses (tests/search/test_sharding.py, test_distributed.py).
jax.devices()


@pytest.fixture
def interactive_sigint():
    """SIGINT raises KeyboardInterrupt, as in a terminal, whatever this process inherited.

    A process started in the background by a non-interactive shell (as CI may start the suite)
    inherits SIGINT ignored, and Python then installs no handler; tests of Ctrl-C handling
    need the terminal's behaviour.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
